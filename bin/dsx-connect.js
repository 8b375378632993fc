#!/usr/bin/env node
// Entry point of the `dsx-connect` command. The product runs TypeScript natively and needs Node >= 22.18;
// when started by an older Node (say, a system Node 20), re-run with the Node 24 that `npm install`
// placed in node_modules (the `node` devDependency pins it through the project itself).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const main = path.join(root, 'src', 'cli', 'main.ts');
const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  await import(main);
} else {
  const pinned = path.join(root, 'node_modules', '.bin', 'node');
  if (!existsSync(pinned)) {
    console.error(`dsx-connect needs Node >= 22.18 (this is ${process.version}); run \`npm install\` in ${root} first`);
    process.exit(1);
  }
  const r = spawnSync(pinned, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
