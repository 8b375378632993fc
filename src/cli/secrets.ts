/**
 * Secrets given to the CLI (webhook secrets, API tokens, the emulator's token). Never as a literal
 * option value: every user of the machine can read a process's command line (`ps -ef`,
 * /proc/<pid>/cmdline), and shells keep it in their history. The safe forms: a file (`--secret-file
 * FILE`), one line from stdin (`--secret -`), or an environment variable (readable only by the same user
 * and root, /proc/<pid>/environ being mode 0400).
 */
import fs from 'node:fs';
import { UsageError } from './usage-error.ts';

/** Where one secret may come from. */
export interface SecretSource {
  /** The option whose only accepted value is `-` (one line from stdin), e.g. `--secret`. */
  flag: string;
  /** That option's value as given on the command line. */
  value: string | undefined;
  /** The option naming a file holding the secret, e.g. `--secret-file`. */
  fileFlag: string;
  /** That option's value as given on the command line. */
  file: string | undefined;
  /** The environment variable that may hold the secret instead, e.g. `DSX_CHANNEL_SECRET` (for messages). */
  envName: string;
}

/** The safe ways to pass this secret, for messages. */
export function safeForms(src: SecretSource): string {
  return `${src.fileFlag} FILE, ${src.flag} - (one line from stdin) or ${src.envName}`;
}

/**
 * The secret the command line asks for: one line from stdin (`flag -`) or the file `fileFlag` names;
 * undefined when neither option is given (the caller then looks at `envName`). Throws a UsageError for a
 * literal value, both options at once, an unreadable file, or an empty secret.
 */
export async function readSecretOption(src: SecretSource): Promise<string | undefined> {
  if (src.value !== undefined && src.value !== '-') {
    throw new UsageError(`${src.flag} with a value on the command line is refused (other users can read it with ps): use ${safeForms(src)}`);
  }
  if (src.value !== undefined && src.file !== undefined) throw new UsageError(`give ${src.flag} - or ${src.fileFlag} FILE, not both`);
  if (src.value === '-') return oneLine(await readStdinLine(src.flag), `${src.flag} - (stdin)`);
  if (src.file !== undefined) return oneLine(readSecretFile(src.fileFlag, src.file), `${src.fileFlag} ${src.file}`);
  return undefined;
}

function oneLine(text: string, where: string): string {
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new UsageError(`${where} is empty: the secret goes on its first line`);
  if (/[\r\n]/.test(secret)) throw new UsageError(`${where} holds more than one line: put the secret alone on one line`);
  return secret;
}

function readSecretFile(flag: string, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`cannot read ${flag} ${file}: ${e.code ?? e.message}`);
  }
}

/**
 * One line from stdin, without the newline. A terminal gets a prompt on stderr and no echo; a pipe or
 * file is read up to its first newline (or its end).
 */
async function readStdinLine(flag: string): Promise<string> {
  const stdin = process.stdin;
  if (stdin.isTTY) return promptHidden(`${flag.replace(/^--/, '')}: `);
  let text = '';
  for await (const chunk of stdin) {
    text += String(chunk);
    if (text.includes('\n')) break;
  }
  return text.split('\n')[0]!;
}

function promptHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve) => {
    let line = '';
    const done = (value: string | null) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (value === null) process.exit(130);
      resolve(value);
    };
    const onData = (keys: string) => {
      for (const key of keys) {
        if (key === '\r' || key === '\n' || key === '\u0004') return done(line);
        if (key === '\u0003') return done(null); // Ctrl-C: raw mode turns it into a character
        if (key === '\u007f' || key === '\b') line = line.slice(0, -1);
        else line += key;
      }
    };
    stdin.on('data', onData);
  });
}
