#!/usr/bin/env node
// npm run build: dist/ from src/, bundled (after `tsc --noEmit` has checked the types).
//
// Every command starts a fresh process, and before this bundle about a third of a quick command's
// time was Node.js loading ~170 small modules (ours and zod's) one by one. Here each oclif entry point
// (every command, the init hook) and every worker thread (`*-worker.ts`, see src/lib/worker.ts) is
// written at its own path under dist/, as oclif and the workers look them up, and what they share goes
// into chunks under dist/chunks/. The AWS SDK and @inquirer/prompts are in the bundle too, in chunks of
// their own that only the commands that import them (lazily) load: a command on S3 reads a few files
// instead of some 300 modules, and the package ships its own code and oclif, nothing else (its
// other dependencies are devDependencies: the bundle holds them). Left out, and loaded as they are:
// - @oclif/core, which a host shares with its plugins (package.json bundles it, with plugin-help);
// - better-sqlite3, a native module that may be absent (node:sqlite then takes its place).
// The licenses of the bundled packages go into dist/THIRD-PARTY-NOTICES.txt.
import {build, transformSync} from 'esbuild'
import {readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

const EXTERNAL = ['@oclif/core', 'better-sqlite3']

/**
 * What a CommonJS module inside the bundle needs in an ES module: `require`, for the Node.js built-ins
 * it loads (a few of the AWS SDK's helpers are CommonJS only). Every output file gets its own.
 */
const REQUIRE =
  "import {createRequire as __createRequire} from 'node:module'; const require = __createRequire(import.meta.url);"

/**
 * zod's namespace `z` carries `z.locales`, the messages of some 60 languages (a third of the bundle, read
 * by every command), which esbuild cannot leave out of a namespace. This plugin never uses them: zod's
 * own English messages are imported apart (classic/schemas.js), and users see this plugin's messages.
 */
const withoutZodLocales = {
  name: 'without-zod-locales',
  setup(build) {
    build.onResolve({filter: /\/locales\/index\.js$/}, ({importer}) =>
      /[/\\]node_modules[/\\]zod[/\\]/.test(importer) ? {namespace: 'zod-locales', path: 'none'} : undefined,
    )
    build.onLoad({filter: /.*/, namespace: 'zod-locales'}, () => ({contents: 'export {}', loader: 'js'}))
  },
}

function sources(folder) {
  return readdirSync(folder, {withFileTypes: true}).flatMap((entry) => {
    const path = join(folder, entry.name)
    return entry.isDirectory() ? sources(path) : entry.name.endsWith('.ts') ? [path] : []
  })
}

const all = sources('src')
const entryPoints = all.filter(
  (path) =>
    path.startsWith(join('src', 'commands')) || path.startsWith(join('src', 'hooks')) || path.endsWith('-worker.ts'),
)

/**
 * The license of every package whose code the bundle holds, as the licenses ask of a copy that is
 * passed on (Apache-2.0's NOTICE included): the package shipped them in its own folder, and the
 * bundle takes the code out of it.
 */
function thirdPartyNotices(inputs) {
  const folders = new Set()
  for (const input of Object.keys(inputs)) {
    const found = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)
    if (found) folders.add(found[1])
  }

  const sections = [...folders]
    .map((folder) => {
      const {license, name, version} = JSON.parse(readFileSync(join(folder, 'package.json'), 'utf8'))
      const texts = readdirSync(folder)
        .filter((file) => /^(licen[cs]e|notice)(\.(md|txt))?$/i.test(file))
        .sort()
        .map((file) => readFileSync(join(folder, file), 'utf8').trim())
      return {
        name,
        text: `${name}@${version} (${license ?? 'see its package'})\n\n${texts.join('\n\n') || '(no license file in the package)'}`,
      }
    })
    .sort((one, other) => one.name.localeCompare(other.name))
  return [
    'Third-party code in this bundle: each package, its version and license, and its license files.',
    ...sections.map(({text}) => text),
  ].join(`\n\n${'-'.repeat(78)}\n\n`)
}

/** What a character that is not ASCII becomes in a comment: one character for one, so the source map's columns hold. */
const IN_ASCII = {
  '\u2013': '-',
  '\u2014': '-',
  '\u2026': '.',
  '\u2018': "'",
  '\u2019': "'",
  '\u201C': '"',
  '\u201D': '"',
}

/** The code without its comments (and its layout), to compare two versions of a file by. */
function withoutComments(code) {
  return transformSync(code, {format: 'esm', legalComments: 'none', minifyWhitespace: true, target: 'node20'}).code
}

/**
 * Every output file in ASCII. V8 keeps the source of every module it loads, for the life of each thread
 * that loads it, and keeps it in two bytes a character if one character of it needs more than one: a
 * single dash in a comment of luxon's doubled the 0.77 MB of the chunk that the main thread and the
 * service thread both load. esbuild already escapes what is not ASCII in strings, regular expressions
 * and names (its default charset); what is left is in comments, which this rewrites. That it touched
 * nothing but comments is checked: with the comments left out, the file is the same before and after.
 */
function inAscii(paths) {
  for (const path of paths) {
    const code = readFileSync(path, 'utf8')
    // eslint-disable-next-line no-control-regex -- the range is what ASCII is
    const ascii = code.replaceAll(/[^\u0000-\u007F]/g, (character) => IN_ASCII[character] ?? '?')
    if (ascii === code) continue
    if (withoutComments(ascii) !== withoutComments(code))
      throw new Error(`${path}: a character that is not ASCII is outside a comment, where it cannot be rewritten`)
    writeFileSync(path, ascii)
  }
}

rmSync('dist', {force: true, recursive: true})
const {metafile} = await build({
  banner: {js: REQUIRE},
  bundle: true,
  chunkNames: 'chunks/[name]-[hash]',
  entryPoints,
  external: EXTERNAL,
  format: 'esm',
  logLevel: 'warning',
  mainFields: ['module', 'main'],
  metafile: true,
  outbase: 'src',
  outdir: 'dist',
  platform: 'node',
  plugins: [withoutZodLocales],
  sourcemap: true,
  splitting: true,
  target: 'node20',
})
inAscii(Object.keys(metafile.outputs).filter((path) => path.endsWith('.js')))
writeFileSync(join('dist', 'THIRD-PARTY-NOTICES.txt'), `${thirdPartyNotices(metafile.inputs)}\n`)
console.log(`dist/: ${entryPoints.length} entry points from ${all.length} modules of src/`)
