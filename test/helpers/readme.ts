/**
 * Reading README.md the way test/readme-examples.test.ts runs it: its fenced code blocks with the
 * line each starts on, the SQL recipes of a block one statement at a time, and psql's --csv output.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_DIR } from '../../src/config.ts';

/** The README the tests read. */
export const README = path.join(PROJECT_DIR, 'README.md');

/** One fenced code block: its info string's first word, its text, and the README line of its first text line. */
export interface FencedBlock {
  lang: string;
  line: number;
  text: string;
}

/** CommonMark fences: up to 3 spaces, then 3+ backticks or tildes; the info string's first word is the language. */
const OPEN = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/;

/** Every fenced code block of `markdown`, in order (an unclosed one runs to the end, as CommonMark says). */
export function fencedBlocks(markdown: string): FencedBlock[] {
  const lines = markdown.split('\n');
  const blocks: FencedBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = OPEN.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const close = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
    let j = i + 1;
    while (j < lines.length && !close.test(lines[j]!)) j++;
    blocks.push({ lang: open[2]!.toLowerCase(), line: i + 2, text: lines.slice(i + 1, j).join('\n') });
    i = j;
  }
  return blocks;
}

/** One statement of a SQL block: the README line it starts on, the comment above it, its text. */
export interface SqlStatement {
  line: number;
  title: string;
  text: string;
}

/** The line without a trailing `-- comment` (outside quotes); `quoted` says whether a string is still open after it. */
function codeOf(line: string, quotedBefore: boolean): { code: string; quoted: boolean } {
  let quoted = quotedBefore;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === "'") quoted = !quoted;
    else if (!quoted && c === '-' && line[i + 1] === '-') return { code: line.slice(0, i), quoted };
  }
  return { code: line, quoted };
}

/**
 * The statements of a SQL block: each ends with the line whose code ends in `;`. A statement's title
 * is the first line of the `--` comments right above it (shared by the statements under one comment).
 */
export function sqlStatements(block: FencedBlock): SqlStatement[] {
  const out: SqlStatement[] = [];
  let title = '';
  let commentOpen = false;
  let current: { line: number; lines: string[] } | undefined;
  let quoted = false;
  block.text.split('\n').forEach((raw, i) => {
    const trimmed = raw.trim();
    if (!current) {
      if (trimmed === '') return;
      if (trimmed.startsWith('--')) {
        if (!commentOpen) title = trimmed.replace(/^--\s*/, '');
        commentOpen = true;
        return;
      }
      current = { line: block.line + i, lines: [] };
    }
    commentOpen = false;
    current.lines.push(raw);
    const c = codeOf(raw, quoted);
    quoted = c.quoted;
    if (!quoted && c.code.trimEnd().endsWith(';')) {
      out.push({ line: current.line, title, text: current.lines.join('\n') });
      current = undefined;
    }
  });
  if (current) out.push({ line: current.line, title, text: current.lines.join('\n') });
  return out;
}

/** Rows of psql's --csv output (RFC 4180: quoted fields may hold commas, quotes as "" and newlines). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field !== '' || row.length > 0) rows.push([...row, field]);
  return rows;
}

/** CSV rows as objects keyed by the header row. */
export function csvRecords(text: string): Record<string, string>[] {
  const [header, ...rows] = parseCsv(text.replace(/\r\n/g, '\n'));
  if (!header) return [];
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? ''])));
}

/** README.md as it is now. */
export function readme(): string {
  return fs.readFileSync(README, 'utf8');
}
