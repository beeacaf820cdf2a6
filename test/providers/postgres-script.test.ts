import {expect} from 'chai'
import {Readable} from 'node:stream'

import {DROP_OWN_RELATIONS, restoreScript} from '../../src/providers/database/postgres-script.js'
import {collect} from '../helpers/tools.js'

const HEAD =
  '--\n-- PostgreSQL database dump\n--\n\n\\restrict abc123\n\n-- Dumped by pg_dump\n\nBEGIN;\n\nSET lock_timeout = 0;\n'
const BODY = 'CREATE TABLE public.t (id integer);\nCOPY public.t (id) FROM stdin;\n1\n\\.\n'.repeat(2000)
const TAIL = '\nCOMMIT;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n'

/** `text` in chunks of `size`, as pg_restore's pipe gives it; then `failure`, if any. */
function output(text: string, size: number, failure?: Error): Readable {
  const bytes = Buffer.from(text)
  return Readable.from(
    (async function* () {
      for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size)
      if (failure) throw failure
    })(),
  )
}

describe("a PostgreSQL restore's script: pg_restore's, with the user's own relations dropped first, in its transaction", () => {
  it('puts the drop right after BEGIN, and passes the rest on whole, however the output comes', async () => {
    for (const size of [1, 7, 100, 4095, 4096, 65_536]) {
      const prepared = await restoreScript(output(HEAD + BODY + TAIL, size))
      expect(prepared, `chunks of ${size}`).to.not.equal(undefined)
      const script = (await collect(prepared!.script)).toString()
      const begin = HEAD.indexOf('BEGIN;\n') + 'BEGIN;\n'.length
      expect(script).to.equal(HEAD.slice(0, begin) + DROP_OWN_RELATIONS + HEAD.slice(begin) + BODY + TAIL)
      expect(prepared!.cutShort()).to.equal(undefined)
    }
  })

  it('ends without COMMIT where pg_restore fails, at any point, and says why', async () => {
    const whole = HEAD + BODY + TAIL
    for (const end of [HEAD.length + 10, HEAD.length + BODY.length, whole.length - 5, whole.length]) {
      const failure = new Error('pg_restore exited with status 1')
      const prepared = await restoreScript(output(whole.slice(0, end), 512, failure))
      const script = (await collect(prepared!.script)).toString()
      expect(script, `cut at ${end}`).to.not.match(/^COMMIT;$/m)
      expect(prepared!.cutShort()).to.equal(failure)
    }
  })

  it('ends without COMMIT where the script has none at its end', async () => {
    const prepared = await restoreScript(output(HEAD + BODY + TAIL.replace('COMMIT;', '-- no commit'), 1000))
    expect((await collect(prepared!.script)).toString()).to.not.match(/^COMMIT;$/m)
    expect(String(prepared!.cutShort())).to.include('no COMMIT')
  })

  it('is not made from a script that does not restrict psql first, nor from one without BEGIN', async () => {
    expect(await restoreScript(output(HEAD.replace('\\restrict abc123\n', '') + BODY + TAIL, 300))).to.equal(undefined)
    expect(await restoreScript(output(HEAD.replace('BEGIN;', '') + BODY + TAIL, 300))).to.equal(undefined)
    // A \restrict line that comes only after BEGIN restricts nothing before it.
    expect(
      await restoreScript(output(HEAD.replace('\\restrict abc123\n', '') + '\\restrict abc123\n' + BODY + TAIL, 300)),
    ).to.equal(undefined)
  })
})
