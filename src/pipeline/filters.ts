/** Scope filters: include/exclude globs matched against the path relative to the scope root. */
import picomatch from 'picomatch';

export type ObjectFilter = (identity: string) => boolean;

const cache = new Map<string, ObjectFilter>();

/** A predicate for one scope's filters (cached by their definition). */
export function scopeFilter(root: string, include: string[], exclude: string[]): ObjectFilter {
  const key = JSON.stringify([root, include, exclude]);
  let filter = cache.get(key);
  if (!filter) {
    const inc = include.length ? picomatch(include, { dot: true }) : () => true;
    const exc = exclude.length ? picomatch(exclude, { dot: true }) : () => false;
    const prefix = root ? `${root}/` : '';
    filter = (identity) => {
      const rel = identity.startsWith(prefix) ? identity.slice(prefix.length) : identity;
      return inc(rel) && !exc(rel);
    };
    if (cache.size > 1000) cache.clear();
    cache.set(key, filter);
  }
  return filter;
}
