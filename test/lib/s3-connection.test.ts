import {expect} from 'chai'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {rootCertificates} from 'node:tls'

import {BackupError} from '../../src/errors.js'
import {agentOptions} from '../../src/lib/s3-connection.js'

describe('S3 agents: the certificate bundle', () => {
  const saved = process.env.AWS_CA_BUNDLE

  afterEach(() => {
    if (saved === undefined) delete process.env.AWS_CA_BUNDLE
    else process.env.AWS_CA_BUNDLE = saved
  })

  it('AWS_CA_BUNDLE becomes one TLS context that every connection shares, not a list each parses again', async () => {
    const bundle = join(mkdtempSync(join(tmpdir(), 'divio-bundle-')), 'ca.pem')
    writeFileSync(bundle, rootCertificates.slice(0, 3).join('\n'))
    process.env.AWS_CA_BUNDLE = bundle
    const {http, https} = await agentOptions(4, {secure: true})
    expect(https.secureContext, 'a context made once').to.not.equal(undefined)
    expect(https.ca, 'no list for each connection to parse').to.equal(undefined)
    expect(http.secureContext).to.equal(undefined)
    expect(https).to.deep.include({keepAlive: true, maxSockets: 4})
  })

  it('a location reached over plain HTTP reads no bundle; one over HTTPS names a bundle it cannot read', async () => {
    process.env.AWS_CA_BUNDLE = join(tmpdir(), 'no-such-bundle.pem')
    const plain = await agentOptions(4, {secure: false})
    expect(plain.https.secureContext).to.equal(undefined)
    const error = await agentOptions(4, {secure: true}).catch((error_: unknown) => error_)
    expect(error).to.be.instanceOf(BackupError)
    expect((error as BackupError).message).to.match(/AWS_CA_BUNDLE names \S+no-such-bundle\.pem, which cannot be read/)
  })

  it("without AWS_CA_BUNDLE, the agents keep Node.js's own authorities (and NODE_EXTRA_CA_CERTS)", async () => {
    delete process.env.AWS_CA_BUNDLE
    const {https} = await agentOptions(4, {secure: true})
    expect(https.secureContext).to.equal(undefined)
    expect(https.ca).to.equal(undefined)
  })
})
