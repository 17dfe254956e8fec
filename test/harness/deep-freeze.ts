/** Freezes a value and everything it reaches (Maps and Sets reject writes), to prove a function never mutates its input. */
export function deepFreeze<T>(o: T, seen: WeakSet<object> = new WeakSet()): T {
  if (o === null || typeof o !== "object" || seen.has(o)) return o;
  seen.add(o);
  if (o instanceof Map || o instanceof Set) {
    for (const [k, v] of o instanceof Map ? o : [...o].map((v) => [v, v])) {
      deepFreeze(k, seen);
      deepFreeze(v, seen);
    }
    if (!Object.isFrozen(o)) {
      const reject = () => {
        throw new Error("collection mutated");
      };
      for (const method of ["set", "add", "delete", "clear"])
        Object.defineProperty(o, method, { value: reject });
    }
  }
  for (const v of Object.values(o as object)) deepFreeze(v, seen);
  Object.freeze(o);
  return o;
}
