/**
 * What the bootstrap superuser does, and nothing else does: the roles, the product's database owned by
 * the owner role, everything in that database handed to it, and the superuser's own password. Each step
 * reads the catalog first and changes only what differs, so running it again (every start of the
 * embedded server, a start interrupted half-way, two processes at once) is safe and a no-op when done.
 * Passwords travel as SCRAM verifiers (src/db/scram.ts), never in clear.
 */
import type pg from 'pg';
import { scramMatches, scramVerifier } from './scram.ts';
import { withTransaction } from './sql/queryable.ts';

/**
 * The roles migration sql/0007_graphql_api.sql grants to (`grant dsx_viewer to dsx_operator`,
 * `grant dsx_viewer, dsx_operator to current_user`): created here, NOLOGIN, and granted to the owner
 * WITH ADMIN OPTION, so that migration succeeds unchanged when run by a role that is not a superuser.
 */
export const API_ROLES = ['dsx_viewer', 'dsx_operator'] as const;

/** Serializes concurrent bootstraps of one cluster (any constant unique to this purpose). */
const BOOTSTRAP_LOCK = 7_301_993_119;
/** Lock waits of the ownership handover: other sessions of an older version may hold the tables. */
const HANDOVER_LOCK_TIMEOUT = '30s';
const DUPLICATE_DATABASE = '42P04';
const UNIQUE_VIOLATION = '23505';
const LOCK_NOT_AVAILABLE = '55P03';

/** What one bootstrap changed; all empty/false/0 when the cluster was already as it should be. */
export interface BootstrapChanges {
  rolesCreated: string[];
  ownerCreated: boolean;
  /** Attributes (LOGIN, NOSUPERUSER, ...) or the password of an existing owner role set back. */
  ownerRepaired: boolean;
  grantsAdded: string[];
  superuserPasswordSet: boolean;
  databaseCreated: boolean;
  databaseOwnerChanged: boolean;
  objectsHandedOver: number;
}

/** Whether `changes` records any change at all. */
export function changedAnything(c: BootstrapChanges): boolean {
  return (
    c.rolesCreated.length > 0 || c.ownerCreated || c.ownerRepaired || c.grantsAdded.length > 0 || c.superuserPasswordSet ||
    c.databaseCreated || c.databaseOwnerChanged || c.objectsHandedOver > 0
  );
}

interface RoleRow {
  rolsuper: boolean;
  rolcreatedb: boolean;
  rolcreaterole: boolean;
  rolcanlogin: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
  rolpassword: string | null;
}

const OWNER_ATTRIBUTES = 'login nosuperuser nocreatedb nocreaterole noreplication nobypassrls';

/**
 * Creates (or repairs) the API roles and the owner role with `password`, and grants the API roles to
 * the owner WITH ADMIN OPTION. Needs a superuser (or a CREATEROLE role with admin rights on them).
 */
export async function ensureOwnerRole(
  client: pg.ClientBase,
  owner: { name: string; password: string },
  changes: BootstrapChanges,
): Promise<void> {
  const id = (s: string) => client.escapeIdentifier(s);
  await withTransaction(client, async () => {
    await client.query('select pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
    for (const role of API_ROLES) {
      const { rowCount } = await client.query('select 1 from pg_roles where rolname = $1', [role]);
      if (!rowCount) {
        await client.query(`create role ${id(role)} nologin`);
        changes.rolesCreated.push(role);
      }
    }
    const { rows } = await client.query<RoleRow>(
      `select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls, rolpassword
         from pg_authid where rolname = $1`,
      [owner.name],
    );
    const row = rows[0];
    if (!row) {
      await client.query(`create role ${id(owner.name)} ${OWNER_ATTRIBUTES} password ${client.escapeLiteral(scramVerifier(owner.password))}`);
      changes.ownerCreated = true;
    } else {
      if (row.rolsuper || row.rolcreatedb || row.rolcreaterole || !row.rolcanlogin || row.rolreplication || row.rolbypassrls) {
        await client.query(`alter role ${id(owner.name)} ${OWNER_ATTRIBUTES}`);
        changes.ownerRepaired = true;
      }
      if (!scramMatches(row.rolpassword, owner.password)) {
        await client.query(`alter role ${id(owner.name)} password ${client.escapeLiteral(scramVerifier(owner.password))}`);
        changes.ownerRepaired = true;
      }
    }
    for (const role of API_ROLES) {
      const { rows: m } = await client.query<{ admin: boolean | null }>(
        `select bool_or(m.admin_option) as admin from pg_auth_members m
           where m.roleid = (select oid from pg_roles where rolname = $1) and m.member = (select oid from pg_roles where rolname = $2)`,
        [role, owner.name],
      );
      if (!m[0]?.admin) {
        await client.query(`grant ${id(role)} to ${id(owner.name)} with admin option`);
        changes.grantsAdded.push(role);
      }
    }
  });
}

/** Sets the connected superuser's password to `password` unless it already is that. */
export async function ensureSuperuserPassword(client: pg.ClientBase, password: string, changes: BootstrapChanges): Promise<void> {
  const { rows } = await client.query<{ rolpassword: string | null }>('select rolpassword from pg_authid where rolname = current_user');
  if (scramMatches(rows[0]?.rolpassword, password)) return;
  await client.query(`alter role current_user password ${client.escapeLiteral(scramVerifier(password))}`);
  changes.superuserPasswordSet = true;
}

/** Creates `database` owned by `owner`, or makes `owner` the owner of the existing one. */
export async function ensureOwnedDatabase(client: pg.ClientBase, database: string, owner: string, changes: BootstrapChanges): Promise<void> {
  const { rows } = await client.query<{ owner: string }>(
    'select pg_get_userbyid(datdba) as owner from pg_database where datname = $1',
    [database],
  );
  if (!rows[0]) {
    try {
      await client.query(`create database ${client.escapeIdentifier(database)} owner ${client.escapeIdentifier(owner)}`);
      changes.databaseCreated = true;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== DUPLICATE_DATABASE && code !== UNIQUE_VIOLATION) throw err; // created meanwhile by another starter
    }
    return ensureOwnedDatabase(client, database, owner, changes);
  }
  if (rows[0].owner !== owner) {
    await client.query(`alter database ${client.escapeIdentifier(database)} owner to ${client.escapeIdentifier(owner)}`);
    changes.databaseOwnerChanged = true;
  }
}

/**
 * One `ALTER ... OWNER TO $1` statement per object of the current database owned by the connected
 * (super)user: schemas other than the system ones, and in them tables, views, materialized views,
 * sequences, foreign tables, functions, procedures, aggregates and types (domains, enums, ranges,
 * standalone composites). Left out, because they follow their parent: indexes, TOAST tables, the row
 * type and array type of a table or type, sequences owned by a column (serial, identity), and members
 * of extensions. `ALTER ... OWNER` rewrites the grants the old owner made as the new owner's, so what
 * the migrations granted to dsx_viewer and dsx_operator stays in force.
 */
const HANDOVER_STATEMENTS = `
with me as (select oid from pg_roles where rolname = current_user),
ns as (
  select n.oid, n.nspname, n.nspowner from pg_namespace n
   where n.nspname not in ('pg_catalog', 'information_schema')
     and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
),
ext as (select classid, objid from pg_depend where deptype = 'e')
select format('alter schema %I owner to %I', ns.nspname, $1::text) as stmt
  from ns where ns.nspowner = (select oid from me)
   and not exists (select 1 from ext where classid = 'pg_namespace'::regclass and objid = ns.oid)
union all
select format('alter %s %s owner to %I',
              case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view'
                             when 'f' then 'foreign table' else 'table' end,
              c.oid::regclass, $1::text)
  from pg_class c join ns on ns.oid = c.relnamespace
 where c.relowner = (select oid from me) and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
   and not exists (select 1 from pg_depend d
                    where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype in ('a', 'i', 'e'))
union all
select format('alter routine %s owner to %I', p.oid::regprocedure, $1::text)
  from pg_proc p join ns on ns.oid = p.pronamespace
 where p.proowner = (select oid from me)
   and not exists (select 1 from ext where classid = 'pg_proc'::regclass and objid = p.oid)
union all
select format('alter type %s owner to %I', t.oid::regtype, $1::text)
  from pg_type t join ns on ns.oid = t.typnamespace
 where t.typowner = (select oid from me) and t.typtype in ('c', 'd', 'e', 'r')
   and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
   and not exists (select 1 from pg_type e where e.typarray = t.oid)
   and not exists (select 1 from ext where classid = 'pg_type'::regclass and objid = t.oid)`;

/**
 * Hands every object of the current database that the connected superuser owns to `owner`, in one
 * transaction (all or nothing), and counts them in `changes` (0 when already done).
 */
export async function handOverObjects(client: pg.ClientBase, owner: string, changes: BootstrapChanges): Promise<void> {
  try {
    const handedOver = await withTransaction(client, async () => {
      await client.query('select pg_advisory_xact_lock($1)', [BOOTSTRAP_LOCK]);
      await client.query(`set local lock_timeout = '${HANDOVER_LOCK_TIMEOUT}'`);
      const { rows } = await client.query<{ stmt: string }>(HANDOVER_STATEMENTS, [owner]);
      for (const { stmt } of rows) await client.query(stmt);
      const left = await client.query<{ stmt: string }>(HANDOVER_STATEMENTS, [owner]);
      if (left.rowCount) throw new Error(`objects still owned by the superuser after the handover, e.g. ${left.rows[0]!.stmt}`);
      return rows.length;
    });
    changes.objectsHandedOver += handedOver;
  } catch (err) {
    if ((err as { code?: string }).code === LOCK_NOT_AVAILABLE) {
      throw new Error(
        `could not hand the database over to ${owner}: other sessions kept its tables locked for ${HANDOVER_LOCK_TIMEOUT}; ` +
          'stop other dsx-connect processes (an older version still running?) and start again',
        { cause: err },
      );
    }
    throw err;
  }
}

/** A BootstrapChanges with nothing changed yet. */
export function noChanges(): BootstrapChanges {
  return {
    rolesCreated: [],
    ownerCreated: false,
    ownerRepaired: false,
    grantsAdded: [],
    superuserPasswordSet: false,
    databaseCreated: false,
    databaseOwnerChanged: false,
    objectsHandedOver: 0,
  };
}
