/**
 * Reads `.env` (or DSX_ENV_FILE) into process.env when imported. main.ts imports it first, so that every
 * module evaluated after it (the logger reads DSX_LOG_LEVEL as it loads) sees the file's settings.
 */
import { loadEnvFile } from '../config.ts';

try {
  loadEnvFile();
} catch (err) {
  process.stderr.write(`error: ${(err as Error).message}\nhint: fix or remove the file (DSX_ENV_FILE=/dev/null reads no env file)\n`);
  process.exit(1);
}
