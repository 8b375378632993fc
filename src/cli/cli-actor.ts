/** Who the audit trail records for catalog changes made from the command line. */
import os from 'node:os';

/**
 * "cli <OS user>@<host>", the form dsx_private.actor() documents: the audit log (and a destructive
 * policy's confirmation) then names the person at the terminal, not the database role all commands share.
 */
export function cliActor(): string {
  let user: string;
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry for the uid (containers running as an arbitrary uid).
    user = process.env.USER || process.env.LOGNAME || `uid ${process.getuid?.() ?? '?'}`;
  }
  return `cli ${user}@${os.hostname()}`;
}
