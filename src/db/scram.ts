/**
 * SCRAM-SHA-256 password verifiers (RFC 5802/7677), in the form PostgreSQL stores in `pg_authid`:
 * `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. We send roles a verifier instead of
 * the password itself (`ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'` stores it as given), so the
 * plaintext never reaches the server: not its statement log, not an error message, not initdb's
 * password file. A verifier does not let anyone log in.
 */
import crypto from 'node:crypto';

/** PostgreSQL's default (`scram_iterations`), and what `psql`'s \password uses. */
const ITERATIONS = 4096;
const SALT_BYTES = 16;

interface Keys {
  storedKey: Buffer;
  serverKey: Buffer;
}

// Passwords here are ASCII (we generate them), for which SASLprep is the identity; PostgreSQL's own
// normalization of other strings is not reproduced, so scramMatches answers false for them.
function keys(password: string, salt: Buffer, iterations: number): Keys {
  const salted = crypto.pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = crypto.createHmac('sha256', salted).update('Client Key').digest();
  return {
    storedKey: crypto.createHash('sha256').update(clientKey).digest(),
    serverKey: crypto.createHmac('sha256', salted).update('Server Key').digest(),
  };
}

/** A fresh verifier (random salt) of `password`, ready for `CREATE/ALTER ROLE ... PASSWORD`. */
export function scramVerifier(password: string): string {
  const salt = crypto.randomBytes(SALT_BYTES);
  const k = keys(password, salt, ITERATIONS);
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString('base64')}$${k.storedKey.toString('base64')}:${k.serverKey.toString('base64')}`;
}

const VERIFIER = /^SCRAM-SHA-256\$(\d{1,7}):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

/** Whether `stored` (a `pg_authid.rolpassword`, possibly null or MD5) is a SCRAM verifier of `password`. */
export function scramMatches(stored: string | null | undefined, password: string): boolean {
  const m = VERIFIER.exec(stored ?? '');
  if (!m) return false;
  const k = keys(password, Buffer.from(m[2]!, 'base64'), Number(m[1]));
  const storedKey = Buffer.from(m[3]!, 'base64');
  const serverKey = Buffer.from(m[4]!, 'base64');
  return (
    storedKey.length === k.storedKey.length &&
    serverKey.length === k.serverKey.length &&
    crypto.timingSafeEqual(storedKey, k.storedKey) &&
    crypto.timingSafeEqual(serverKey, k.serverKey)
  );
}
