/**
 * The etcd connection options every service takes (credentials and TLS), declared once
 * and spread into each service's option table: the same flags everywhere (-etcd-user,
 * -etcd-password, -etcd-ca, -etcd-cert, -etcd-key), each service's own environment names
 * (ROUTER_ETCD_USER, REGISTRATOR_ETCD_USER, the agent's ETCD_USER). Endpoints stay each
 * service's own: the router's --etcd, the registrator's etcd:// URI, the agent's ETCD_HOSTS.
 * etcd.ts makes the client from what these give.
 */
import { type ConfigOf, opt } from "./config.js";
import { ConfigError } from "./errors.js";
import type { EtcdOptions } from "./etcd.js";

export interface EtcdOptionNames {
  /** What each environment name starts with: `ROUTER_ETCD_` gives ROUTER_ETCD_USER, ROUTER_ETCD_CA... */
  readonly envPrefix: string;
  /** Older spellings of -etcd-user that stay valid (the agent's -etcd-username and ETCD_USERNAME). */
  readonly userAliases?: { readonly flags: readonly string[]; readonly env: readonly string[] };
}

export function etcdConnectionOptions(names: EtcdOptionNames) {
  const env = (name: string) => `${names.envPrefix}${name}`;
  const aliases = names.userAliases;
  return {
    etcdUser: opt.optionalString({
      flag: "etcd-user",
      env: env("USER"),
      ...(aliases ? { aliases: aliases.flags, envAliases: aliases.env } : {}),
      description: "etcd username (etcd auth)",
      metavar: "NAME",
    }),
    etcdPassword: opt.optionalString({
      flag: "etcd-password",
      env: env("PASSWORD"),
      description: "etcd password; prefer the environment variable (or its _FILE) over the flag",
      metavar: "PASSWORD",
      secret: true,
    }),
    etcdCa: opt.optionalString({
      flag: "etcd-ca",
      env: env("CA"),
      description: "PEM file of the CA that signed etcd's certificate; turns TLS on",
      metavar: "FILE",
    }),
    etcdCert: opt.optionalString({
      flag: "etcd-cert",
      env: env("CERT"),
      description: "PEM client certificate for etcd (with -etcd-key)",
      metavar: "FILE",
    }),
    etcdKey: opt.optionalString({
      flag: "etcd-key",
      env: env("KEY"),
      description: "PEM client key for etcd (with -etcd-cert)",
      metavar: "FILE",
    }),
  };
}

export type EtcdConnectionConfig = ConfigOf<ReturnType<typeof etcdConnectionOptions>>;

/** What the options give, as the etcd client takes it (hosts apart). */
export function etcdConnection(c: EtcdConnectionConfig): Omit<EtcdOptions, "hosts"> {
  return {
    username: c.etcdUser,
    password: c.etcdPassword,
    caFile: c.etcdCa,
    certFile: c.etcdCert,
    keyFile: c.etcdKey,
  };
}

/** A client certificate without its key (or the reverse) is a configuration error. */
export function checkEtcdCertKey(program: string, c: EtcdConnectionConfig): void {
  if ((c.etcdCert === undefined) !== (c.etcdKey === undefined)) {
    throw new ConfigError("etcd-cert", `${program}: -etcd-cert and -etcd-key must be given together`);
  }
}
