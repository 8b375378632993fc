/**
 * Every SQL statement the product sends is parameterized: a static check of the sources. For every
 * `.query(...)` call (and the `text:` of a query config object) in src/, tasks/ and graphql/, the SQL
 * must be a string literal, or a template literal whose `${...}` parts are module-level constants of
 * the same file (column lists, fixed expressions) or an explicitly allowed expression below. Values
 * always travel as `$n` parameters. kysely's raw escapes (`sql.raw`, `sql.lit`, `sql.id`...) are refused
 * outright. A small tokenizer (strings, templates, comments, brackets) is enough: no TypeScript API
 * exists for TypeScript 7.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { functionFiles, migrationFiles } from '../src/db/migrate.ts';

/** Interpolations that are not constants but are safe, each with why. Keyed `file: expression`. */
const ALLOWED: Record<string, string> = {
  'src/db/connect.ts: client.escapeIdentifier(name)': 'a database name, quoted as an identifier by the driver',
  'src/db/migrate.ts: file.sql': 'a migration file from sql/ (checked in, checksummed), not input',
  'src/db/connect.ts: owner': 'a role name quoted by client.escapeIdentifier on the line before (DDL takes no parameters)',
  'src/db/embedded-bootstrap.ts: id(role)': 'a role name quoted by client.escapeIdentifier (DDL takes no parameters)',
  'src/db/embedded-bootstrap.ts: id(owner.name)': 'the owner role name, quoted by client.escapeIdentifier',
  'src/db/embedded-bootstrap.ts: client.escapeLiteral(scramVerifier(password))': 'a SCRAM verifier (never the password) quoted by client.escapeLiteral: ALTER ROLE takes no parameters',
  'src/db/embedded-bootstrap.ts: client.escapeLiteral(scramVerifier(owner.password))': 'a SCRAM verifier quoted by client.escapeLiteral',
  'src/db/embedded-bootstrap.ts: client.escapeIdentifier(database)': 'a database name quoted as an identifier by the driver',
  'src/db/embedded-bootstrap.ts: client.escapeIdentifier(owner)': 'a role name quoted as an identifier by the driver',
  'src/db/embedded-bootstrap.ts: stmt': 'ALTER ... OWNER statements the catalog query HANDOVER_STATEMENTS builds with format(%I)',
  'src/db/sql/queryable.ts: text': "the PostGraphile adapter passes its caller's statement through; each caller's SQL is checked where it is written",
  'src/db/sql/retention.ts: chunk.sql': 'one of the string literals of CHUNK_SQL, chosen by table name',
};

const ROOTS = ['src', 'tasks', 'graphql'];

function sources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(path.join(PROJECT_DIR, dir), { withFileTypes: true })) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts')) out.push(rel);
    }
  };
  for (const r of ROOTS) walk(r);
  return out;
}

/** Skips a string, template or comment starting at `i`; returns the index after it (or `i` if none). */
function skipToken(src: string, i: number, interpolations?: string[]): number {
  const c = src[i];
  if (c === "'" || c === '"') {
    for (let j = i + 1; j < src.length; j++) {
      if (src[j] === '\\') j++;
      else if (src[j] === c) return j + 1;
    }
    throw new Error('unterminated string');
  }
  if (c === '`') {
    for (let j = i + 1; j < src.length; j++) {
      if (src[j] === '\\') j++;
      else if (src[j] === '`') return j + 1;
      else if (src[j] === '$' && src[j + 1] === '{') {
        const end = readExpression(src, j + 2, '}');
        interpolations?.push(src.slice(j + 2, end).trim());
        j = end;
      }
    }
    throw new Error('unterminated template');
  }
  if (c === '/' && src[i + 1] === '/') return src.indexOf('\n', i) === -1 ? src.length : src.indexOf('\n', i);
  if (c === '/' && src[i + 1] === '*') return src.indexOf('*/', i) + 2;
  return i;
}

/** Index of the first of `stops` at bracket depth 0 from `i` (skipping strings, templates, comments). */
function readExpression(src: string, i: number, stops: string): number {
  let depth = 0;
  while (i < src.length) {
    const next = skipToken(src, i);
    if (next !== i) {
      i = next;
      continue;
    }
    const c = src[i]!;
    if (depth === 0 && stops.includes(c)) return i;
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    i++;
  }
  throw new Error('unterminated expression');
}

/** Module-level `const NAME = <initializer>;` of a file. */
function constants(src: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of src.matchAll(/^(?:export )?const ([A-Za-z_$][\w$]*)(?::[^=]+)? = /gm)) {
    const start = m.index! + m[0].length;
    try {
      out.set(m[1]!, src.slice(start, readExpression(src, start, ';')).trim());
    } catch {
      // an initializer this tokenizer cannot read (a regular expression with quotes...): not SQL
    }
  }
  return out;
}

const allowedUsed = new Set<string>();

/** Why `sql` (the text of a SQL argument) is not parameterized, or null when it is. */
function problem(file: string, sql: string, consts: Map<string, string>, seen = new Set<string>()): string | null {
  if (/^'(?:[^'\\]|\\.)*'$/s.test(sql) || /^"(?:[^"\\]|\\.)*"$/s.test(sql)) return null;
  if (ALLOWED[`${file}: ${sql}`]) {
    allowedUsed.add(`${file}: ${sql}`);
    return null;
  }
  if (/^[A-Za-z_$][\w$]*$/.test(sql)) {
    const init = consts.get(sql);
    if (init === undefined || seen.has(sql)) return `${sql} is not a module-level constant of ${file}`;
    return problem(file, init, consts, new Set([...seen, sql]));
  }
  if (sql.startsWith('`') && skipToken(sql, 0) === sql.length) {
    const interpolations: string[] = [];
    skipToken(sql, 0, interpolations);
    for (const expr of interpolations) {
      const p = problem(file, expr, consts, seen);
      if (p) return `interpolates \${${expr}}: ${p}`;
    }
    return null;
  }
  return `SQL built from an expression: ${sql.slice(0, 80)}`;
}

interface Finding {
  file: string;
  line: number;
  sql: string;
  problem: string | null;
}

/** Every SQL text passed to `.query(` or as `text:` of a query config, with its problem (or null). */
function check(file: string, src: string): Finding[] {
  const consts = constants(src);
  const findings: Finding[] = [];
  const lineOf = (i: number) => src.slice(0, i).split('\n').length;
  const add = (at: number, sql: string) => findings.push({ file, line: lineOf(at), sql, problem: problem(file, sql, consts) });
  for (const m of src.matchAll(/\.query\s*(?=[<(])/g)) {
    let i = m.index! + m[0].length;
    if (src[i] === '<') i = readExpression(src, i + 1, '>') + 1; // type arguments
    if (src[i] !== '(') continue;
    const start = i + 1 + (src.slice(i + 1).match(/^\s*/)?.[0].length ?? 0);
    if (src[start] === ')' || src.startsWith('q: {', start)) continue; // a type signature, not a call
    const arg = src.slice(start, readExpression(src, start, ',)')).trim();
    if (arg.startsWith('{')) {
      const text = /\btext\s*:\s*/.exec(arg);
      if (!text) findings.push({ file, line: lineOf(start), sql: arg, problem: 'a query config without text' });
      else add(start, arg.slice(text.index + text[0].length, readExpression(arg, text.index + text[0].length, ',}')).trim());
    } else {
      add(start, arg);
    }
  }
  for (const m of src.matchAll(/\bsql\s*\.\s*(raw|lit|id|ref|table|val|join)\s*\(/g)) {
    findings.push({ file, line: lineOf(m.index!), sql: m[0], problem: `kysely sql.${m[1]} bypasses parameters` });
  }
  return findings;
}

t.test('the checker itself flags interpolated values and accepts constants', async (t) => {
  const bad = [
    'await pool.query(`select * from t where id = ${id}`);',
    "await pool.query('select * from t where name = ' + name);",
    'await client.query<{ a: string }>({ text: `delete from t where k = ${key}`, values: [] });',
    'await db.query(buildSql(input), []);',
    'const q = sql`select ${sql.raw(userInput)}`;',
  ];
  for (const src of bad) t.ok(check('x.ts', src).some((f) => f.problem), `flagged: ${src}`);
  const good = [
    "const COLS = 'id, name';\nawait pool.query(`select ${COLS} from t where id = $1`, [id]);",
    "await pool.query<{ r: string }>('select f($1) as r', [x]);",
    'const Q = `select 1`;\nawait c.query({ text: Q, values: [] });',
  ];
  for (const src of good) t.same(check('x.ts', src).map((f) => f.problem), [null], `accepted: ${src.split('\n').at(-1)}`);
});

t.test('every SQL statement in src/, tasks/ and graphql/ is parameterized', async (t) => {
  const findings = sources().flatMap((file) => check(file, fs.readFileSync(path.join(PROJECT_DIR, file), 'utf8')));
  t.ok(findings.length >= 35, `${findings.length} SQL statements found (the scanner sees the code)`);
  for (const f of findings.filter((x) => x.problem)) t.fail(`${f.file}:${f.line}: ${f.problem}`);
  for (const key of Object.keys(ALLOWED)) t.ok(allowedUsed.has(key), `allow-list entry still needed: ${key}`);
});

t.test('dynamic SQL in sql/ (plpgsql execute) quotes every value with format %I or %L', async (t) => {
  let statements = 0;
  for (const { name, sql } of [...migrationFiles(), ...functionFiles()]) {
    const text = sql.replace(/--[^\n]*/g, ''); // comments may say "execute" in prose
    // `execute function` (triggers) and `grant/revoke execute` are not dynamic SQL.
    for (const m of text.matchAll(/\bexecute\s+(?!function\b|on\b)([^;]*);/gi)) {
      if (/^(grant|revoke)\s/i.test(text.slice(text.lastIndexOf('\n', m.index!) + 1, m.index!).trim())) continue;
      statements++;
      const body = m[1]!.trim();
      const ok = /^format\s*\(\s*'(?:[^'%]|%[IL%])*'/i.test(body) && !/\|\|/.test(body);
      t.ok(ok, `${name}: execute ${body.slice(0, 80)}`);
    }
  }
  t.ok(statements >= 1, `${statements} dynamic statements checked`);
});
