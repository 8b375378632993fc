/** Structured logs (pino). Tasks log through child loggers carrying job id, job type and correlation id. */
import { pino, type Logger } from 'pino';

export type { Logger };

/** The process logger; level from DSX_LOG_LEVEL (default info). */
export const log: Logger = pino({
  level: process.env.DSX_LOG_LEVEL ?? 'info',
  base: { pid: process.pid },
  redact: { paths: ['*.token', '*.secret', '*.credentials', '*.password', 'token', 'secret', 'credentials'], censor: '[redacted]' },
});
