/**
 * Who is calling the GraphQL API. A request carries `Authorization: Bearer <token>` (HTTP header, or
 * the `authorization` connection parameter of a websocket): a JWT signed with DSX_JWT_SECRET (HS256,
 * claim `role`: viewer | operator, `sub`, `exp`) or an API token (`dsx_...`, stored as its SHA-256 in
 * dsx.api_tokens). The role maps to a database role (dsx_viewer / dsx_operator) that the server
 * switches to for the request's transaction, so PostgreSQL enforces what the caller may do.
 */
import crypto from 'node:crypto';
import type pg from 'pg';
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose';
import { apiTokenGetByHash } from '../db/sql/api-tokens.ts';

export type ApiRole = 'viewer' | 'operator';
export const API_ROLES: readonly ApiRole[] = ['viewer', 'operator'];

export interface Identity {
  role: ApiRole;
  subject: string;
}

export interface AuthOptions {
  /** open: no token needed, everyone is an operator (development only). */
  mode: 'open' | 'token';
  jwtSecret: string | undefined;
  /** The owner's pool, to look API tokens up. */
  pool: pg.Pool;
}

/** An authentication failure: the message is safe to show to the client. */
export class AuthError extends Error {}

export function dbRole(role: ApiRole): string {
  return role === 'operator' ? 'dsx_operator' : 'dsx_viewer';
}

export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token).digest('hex');
}

/** A new random API token (shown once; only its hash is stored). */
export function newApiToken(): string {
  return `dsx_${crypto.randomBytes(24).toString('base64url')}`;
}

/** Signs a JWT for the API (used by `dsx-connect token jwt` and tests). */
export async function signJwt(secret: string, claims: { role: ApiRole; sub: string }, ttlSeconds: number): Promise<string> {
  return new SignJWT({ role: claims.role })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(claims.sub)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret));
}

async function verifyJwt(secret: string | undefined, token: string): Promise<Identity> {
  if (!secret) throw new AuthError('authentication failed: JWTs are not accepted by this server (DSX_JWT_SECRET is not set); use an API token');
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(secret), { algorithms: ['HS256'], requiredClaims: ['exp'] });
    const role = payload.role;
    if (role !== 'viewer' && role !== 'operator') throw new AuthError('authentication failed: the token has no valid "role" claim (viewer or operator)');
    return { role, subject: payload.sub ?? 'jwt' };
  } catch (err) {
    if (err instanceof AuthError) throw err;
    if (err instanceof joseErrors.JWTExpired) throw new AuthError('authentication failed: the token has expired');
    if (err instanceof joseErrors.JWSSignatureVerificationFailed) throw new AuthError('authentication failed: the token signature is invalid');
    throw new AuthError(`authentication failed: invalid token (${(err as Error).message})`);
  }
}

async function verifyApiToken(pool: pg.Pool, token: string): Promise<Identity> {
  const r = await apiTokenGetByHash(pool, hashToken(token));
  if (!r) throw new AuthError('authentication failed: unknown API token');
  if (r.state === 'revoked') throw new AuthError('authentication failed: the API token was revoked');
  if (r.state === 'expired') throw new AuthError('authentication failed: the API token has expired');
  return { role: r.role, subject: `token:${r.name}` };
}

/** Resolves the caller from an Authorization value; throws AuthError when it is missing or invalid. */
export async function identify(opts: AuthOptions, authorization: string | undefined): Promise<Identity> {
  if (opts.mode === 'open') return { role: 'operator', subject: 'open-dev-mode' };
  if (!authorization) throw new AuthError('authentication required: send "Authorization: Bearer <token>" (a JWT or an API token)');
  const m = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!m) throw new AuthError('authentication failed: the Authorization header must be "Bearer <token>"');
  const token = m[1]!;
  return token.startsWith('dsx_') ? verifyApiToken(opts.pool, token) : verifyJwt(opts.jwtSecret, token);
}
