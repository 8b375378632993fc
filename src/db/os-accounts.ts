/**
 * Local OS accounts from /etc/passwd: the `postgres` account the embedded server runs as when we are
 * root, and the name behind a file owner's uid for error messages. Accounts known only through NSS
 * (LDAP, ...) are not listed there; callers fall back to `id` or to the bare uid.
 */
import fs from 'node:fs';

/** One /etc/passwd entry: name, uid and primary gid. */
export interface OsAccount {
  name: string;
  uid: number;
  gid: number;
}

function accounts(): OsAccount[] {
  let text: string;
  try {
    text = fs.readFileSync('/etc/passwd', 'utf8');
  } catch {
    return []; // no /etc/passwd (Windows, some containers)
  }
  return text.split('\n').flatMap((line) => {
    const [name, , uid, gid] = line.split(':');
    return name && uid && gid ? [{ name, uid: Number(uid), gid: Number(gid) }] : [];
  });
}

/** The account named `name`, if /etc/passwd lists it. */
export function accountByName(name: string): OsAccount | undefined {
  return accounts().find((a) => a.name === name);
}

/** The name of `uid`, if /etc/passwd lists it. */
export function accountName(uid: number): string | undefined {
  return accounts().find((a) => a.uid === uid)?.name;
}
