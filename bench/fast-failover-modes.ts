/** The fastfailover part's modes, paths and stacks (no I/O: options and the report use them). */
export const FF_MODES = ["release", "ttl"] as const;
export type FfMode = (typeof FF_MODES)[number];
export const FF_PATHS = ["router", "haproxy-fast"] as const;
export type FfPath = (typeof FF_PATHS)[number];
/** `single`: the stack as `./pgha up` runs it (-internal); `multihost`: with docker-compose.multihost.yml (-ip, published ports). */
export const FF_STACKS = ["single", "multihost"] as const;
export type FfStack = (typeof FF_STACKS)[number];
