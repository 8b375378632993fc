/**
 * One `dsx-connect` command run to its end, asynchronously (the test process owns the embedded
 * PostgreSQL and must keep reading its log pipe): exit code, stdout and stderr, trimmed.
 */
import { spawn } from 'node:child_process';
import { BIN, productEnv } from './processes.ts';

/** What a finished command printed and how it exited. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `dsx-connect ...args` against the database at `databaseUrl`; `stdin` is written to its input when given. */
export function runCli(databaseUrl: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: productEnv({ DATABASE_URL: databaseUrl, DSX_LOG_LEVEL: 'warn', ...opts.env }),
      stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d));
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}
