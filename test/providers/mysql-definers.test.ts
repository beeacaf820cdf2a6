import {expect} from 'chai'
import * as fc from 'fast-check'
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {Readable} from 'node:stream'

import {mapSchemaLines, SCHEMA_LINE_LOOKAHEAD} from '../../src/providers/database/dump-schema-lines.js'
import {definerAsCurrentUser, DEFINERS_SED, definersIn} from '../../src/providers/database/mysql-definers.js'
import {collect} from '../helpers/tools.js'

/** The lines of mariadb-dump 10.11 and mysqldump 8.0 that name a definer, with an account in them. */
const DEFINER_LINES: Array<(account: string) => string> = [
  (account) =>
    `/*!50003 CREATE*/ /*!50017 DEFINER=${account}*/ /*!50003 TRIGGER tr AFTER INSERT ON t FOR EACH ROW INSERT INTO a VALUES (NEW.id) */;;`,
  (account) =>
    `/*!50106 CREATE*/ /*!50117 DEFINER=${account}*/ /*!50106 EVENT \`e\` ON SCHEDULE EVERY 1 DAY STARTS '2026-12-06 11:56:22' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM a */ ;;`,
  (account) => `CREATE DEFINER=${account} FUNCTION \`f\`(x INT) RETURNS int(11)`,
  (account) => `CREATE DEFINER=${account} PROCEDURE \`p\`()`,
  (account) => `/*!50013 DEFINER=${account} SQL SECURITY DEFINER */`,
  (account) =>
    `/*!50001 CREATE ALGORITHM=UNDEFINED DEFINER=${account} SQL SECURITY DEFINER VIEW \`v3\` AS select 1 AS \`one\` */;`,
]

/** Lines that only look like those: rows, comments, a definer not at the line's start. */
const LOOKALIKES = [
  "(1,'/*!50017 DEFINER=`x`@`y`*/'),",
  "INSERT INTO `t` VALUES (2,'CREATE DEFINER=`x`@`y` FUNCTION');",
  ' CREATE DEFINER=`x`@`y` FUNCTION `f`()',
  '-- CREATE DEFINER=`x`@`y` FUNCTION',
  '/*!50001 CREATE VIEW `v` AS SELECT',
  '/*!40101 SET character_set_client = utf8mb4 */;',
  'CREATE TABLE `t` (',
  'create definer=`x`@`y` function `f`()',
]

function quoted(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``
}

/** An account as the dump tools write it, in latin1 so that its UTF-8 bytes round-trip. */
function account(user: string, host: null | string): string {
  const written = host === null ? quoted(user) : `${quoted(user)}@${quoted(host)}`
  return Buffer.from(written).toString('latin1')
}

/** A line of a dump: one that names a definer, one that looks like it, a long one, anything. */
const line = fc.oneof(
  fc
    .tuple(
      fc.constantFrom(...DEFINER_LINES),
      fc.string({maxLength: 12, unit: 'grapheme'}),
      fc.option(fc.string({maxLength: 12, unit: 'grapheme'})),
    )
    .map(([make, user, host]) => make(account(user, host))),
  fc.constantFrom(...LOOKALIKES),
  // A value or a view longer than the look-ahead, with or without a definer at its start.
  fc
    .tuple(fc.constantFrom('CREATE DEFINER=`x`@`y` FUNCTION ', '(1,', '/*!50013 '), fc.nat(SCHEMA_LINE_LOOKAHEAD * 2))
    .map(([start, length]) => start + 'v'.repeat(length)),
  fc.string({maxLength: 40}).map((text) => Buffer.from(text).toString('latin1')),
)

/** A dump as a restore sends it to the client: with every definer as CURRENT_USER. */
function withDefinersAsCurrentUser(sql: Readable): Readable {
  return Readable.from(mapSchemaLines(sql, definerAsCurrentUser), {objectMode: false})
}

describe("a MySQL dump's definers become the restoring user", () => {
  it('rewrites the definer of every statement that names one, and nothing else on its line', () => {
    for (const line of DEFINER_LINES) {
      for (const who of [
        account('live', '127.0.0.1'),
        account('we`ird', '%'),
        account('r1', null),
        account('zoë 🦊', 'app-1.internal'),
        account('`', '``'),
        'CURRENT_USER',
        'CURRENT_USER()',
      ]) {
        expect(definerAsCurrentUser(line(who))).to.equal(line('CURRENT_USER'))
      }
    }
  })

  it('leaves alone every line that only looks like one', () => {
    for (const line of LOOKALIKES) expect(definerAsCurrentUser(line)).to.equal(line)
  })

  it('gives the same bytes as rewriting line by line, however the stream is cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, {maxLength: 12}),
        fc.boolean(),
        fc.array(fc.nat(), {maxLength: 6}),
        async (lines, lastNewline, cuts) => {
          const dump = Buffer.from(lines.join('\n') + (lastNewline && lines.length > 0 ? '\n' : ''), 'latin1')
          const expected = Buffer.from(
            dump
              .toString('latin1')
              .split('\n')
              .map(
                (text) =>
                  definerAsCurrentUser(text.slice(0, SCHEMA_LINE_LOOKAHEAD)) + text.slice(SCHEMA_LINE_LOOKAHEAD),
              )
              .join('\n'),
            'latin1',
          )
          const ends = [...new Set(cuts.map((cut) => cut % (dump.length + 1)))].sort((a, b) => a - b)
          const chunks = [...ends, dump.length].map((end, index, all) => dump.subarray(index ? all[index - 1] : 0, end))
          const output = await collect(withDefinersAsCurrentUser(Readable.from(chunks)))
          expect(output.equals(expected)).to.equal(true)
        },
      ),
      {numRuns: 400},
    )
  })

  it('gives the same bytes as the stock sed of the export recipe', async () => {
    const dump = Buffer.from(
      [
        ...fc.sample(line, {numRuns: 2000, seed: 20_261_206}),
        ...LOOKALIKES,
        ...DEFINER_LINES.map((make) => make(account('a`b', 'h'))),
      ].join('\n'),
      'latin1',
    )
    const sed = spawnSync('sh', ['-c', DEFINERS_SED], {input: dump, maxBuffer: 1 << 26})
    expect(sed.status, sed.stderr.toString()).to.equal(0)
    expect(sed.stdout.toString('latin1').match(/CURRENT_USER/g)?.length).to.be.greaterThan(500)
    const output = await collect(withDefinersAsCurrentUser(Readable.from([dump])))
    expect(output.equals(sed.stdout)).to.equal(true)
    expect(readFileSync('docs/restore.md', 'utf8')).to.include(DEFINERS_SED)
  })

  it('names every account a dump names as a definer, once each, as SQL can take it', async () => {
    const dump = [
      ...DEFINER_LINES.map((make) => make(account('live', '127.0.0.1'))),
      DEFINER_LINES[0](account('zoë 🦊', '%')),
      DEFINER_LINES[2](account('r1', null)),
      DEFINER_LINES[3](account('we`ird', 'h`')),
      DEFINER_LINES[4]('CURRENT_USER'),
      ...LOOKALIKES,
    ].join('\n')
    expect(await definersIn(Readable.from([Buffer.from(dump, 'latin1')]))).to.deep.equal([
      '`live`@`127.0.0.1`',
      '`zoë 🦊`@`%`',
      '`r1`',
      '`we``ird`@`h```',
    ])
  })

  it('holds no more of a long line than its look-ahead, and passes its chunks on as they come', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'v')
    const chunks = [Buffer.from('CREATE '), ...Array.from({length: 1024}, () => chunk), Buffer.from('\n')]
    let largest = 0
    let total = 0
    for await (const piece of withDefinersAsCurrentUser(Readable.from(chunks)) as AsyncIterable<Buffer>) {
      largest = Math.max(largest, piece.length)
      total += piece.length
    }

    expect(total).to.equal(7 + 64 * 1024 * 1024 + 1)
    expect(largest).to.be.at.most(chunk.length + SCHEMA_LINE_LOOKAHEAD)
  })

  it('passes a chunk with no definer on as the same buffer, so that its lender can have it back', async () => {
    const chunk = Buffer.from("INSERT INTO `t` VALUES (1,'a');\n/*!40101 SET NAMES utf8mb4 */;\n")
    const [passed] = (await withDefinersAsCurrentUser(Readable.from([chunk])).toArray()) as Buffer[]
    expect(passed).to.equal(chunk)
  })
})
