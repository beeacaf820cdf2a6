#!/usr/bin/env node
// Builds a small Django-like app in a temp folder (SQLite database + media folder) and runs
// create → list → verify → download through bin/run.js, printing each command and its real output.
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, symlinkSync, writeFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const runJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'run.js')
const workspace = mkdtempSync(join(tmpdir(), 'divio-backup-demo-'))
const app = join(workspace, 'shop')
mkdirSync(app)

// better-sqlite3 where it is installed and built for this Node.js, else node:sqlite (Node 22).
function openDatabase(path) {
  const require = createRequire(import.meta.url)
  try {
    const Database = require('better-sqlite3')
    return new Database(path)
  } catch {
    process.removeAllListeners('warning') // node:sqlite's ExperimentalWarning is not the demo's business
    const {DatabaseSync} = require('node:sqlite')
    return new DatabaseSync(path)
  }
}

const db = openDatabase(join(app, 'db.sqlite3'))
db.exec(`
  CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, date_joined TEXT NOT NULL);
  CREATE TABLE shop_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);
  CREATE TABLE shop_order (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES auth_user(id), product_id INTEGER REFERENCES shop_product(id));
`)
const users = ['ada', 'grace', 'linus', 'zoë']
for (const [index, name] of users.entries())
  db.prepare('INSERT INTO auth_user VALUES (?, ?, ?)').run(index + 1, name, '2026-11-01')
for (const [index, name] of ['Café crème', 'Bircher müesli', 'Rösti'].entries())
  db.prepare('INSERT INTO shop_product VALUES (?, ?, ?)').run(index + 1, name, 450 + index * 100)

for (let order = 1; order <= 10; order++)
  db.prepare('INSERT INTO shop_order VALUES (?, ?, ?)').run(order, (order % 4) + 1, (order % 3) + 1)
db.close()

const media = join(app, 'media')
mkdirSync(join(media, 'products', 'café'), {recursive: true})
mkdirSync(join(media, 'avatars'))
writeFileSync(
  join(media, 'products', 'café', 'crème.jpg'),
  Buffer.from(Array.from({length: 48_000}, (_, index) => (index * 31) % 256)),
)
writeFileSync(
  join(media, 'products', 'rösti.png'),
  Buffer.from(Array.from({length: 12_000}, (_, index) => (index * 17) % 256)),
)
writeFileSync(join(media, 'avatars', 'zoë.txt'), 'Zoë’s avatar goes here.\n')
writeFileSync(join(media, 'avatars', 'empty.txt'), '')
symlinkSync('products/rösti.png', join(media, 'featured.png'))

// A private HOME keeps the demo's generated key away from your real ~/.config/divio.
const env = {...process.env, DIVIO_BACKUP_IDENTITY_FILE: '', HOME: join(workspace, 'home')}

function run(...args) {
  console.log(`\n$ divio app backup ${args.join(' ')}`)
  const result = spawnSync(process.execPath, [runJs, 'app', 'backup', ...args], {cwd: app, encoding: 'utf8', env})
  process.stdout.write(result.stderr)
  process.stdout.write(result.stdout)
  if (result.status !== 0)
    console.error(`\nThe demo failed: \`divio app backup ${args.join(' ')}\` exited ${result.status}.`)
  return result.status === 0
}

console.log(`A sample app in ${app}:`)
console.log('  db.sqlite3  (auth_user, shop_product, shop_order)')
console.log('  media/      (nested folders, non-ASCII names, binary files, an empty file, a symlink)')
const steps = [['create', '--note', 'demo'], ['list'], ['verify'], ['download', 'latest', '-o', 'restored']]
if (steps.every((step) => run(...step))) {
  console.log(`\nEverything above is in ${workspace}. The files in shop/restored open without this tool:`)
  console.log(`  sqlite3 ${join(app, 'restored', 'database.sqlite3')} 'SELECT * FROM shop_product'`)
  console.log(`  tar -tvf ${join(app, 'restored', 'media.tar')}`)
} else {
  process.exitCode = 1
}
