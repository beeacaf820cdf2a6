import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer as createHttpServer, request as httpRequest} from 'node:http'
import {createServer, Server} from 'node:https'
import {AddressInfo, connect} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {agentsTakeProxies} from '../../src/lib/proxy.js'
import {cli, makeProject} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'

interface Failed {
  error: {code: string; message: string; suggestion: string}
}

/**
 * How a command reaches S3: an S3-compatible service on HTTPS with a certificate of its own authority (a self-hosted MinIO or
 * Ceph, a proxy that inspects TLS): each way the check fails is named, with what to do, and
 * AWS_CA_BUNDLE, which the AWS CLI reads and the AWS SDK for JavaScript does not, makes it trusted;
 * and the proxy of HTTPS_PROXY, which the AWS CLI takes, where Node.js can tunnel (the Node.js 22 and
 * 24 lanes run this file too).
 */
describe('how S3 is reached: a private certificate authority, a proxy (s3rver behind HTTPS)', function () {
  let s3: TestS3
  let folder: string
  const servers: Server[] = []

  before(async () => {
    s3 = await TestS3.start()
    folder = mkdtempSync(join(tmpdir(), 'divio-backup-tls-'))
    const openssl = (...args: string[]) => execFileSync('openssl', args, {cwd: folder, stdio: 'pipe'})
    const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    // A self-signed certificate for 127.0.0.1; an authority, and two certificates it signs.
    openssl(
      'req',
      '-x509',
      ...key,
      '-keyout',
      'self.key',
      '-out',
      'self.pem',
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    )
    openssl('req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=Test CA')
    for (const [name, san] of [
      ['right', 'IP:127.0.0.1'],
      ['wrong', 'DNS:minio.internal'],
    ]) {
      openssl('req', ...key, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
      writeFileSync(join(folder, `${name}.ext`), `subjectAltName=${san}\n`)
      openssl(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        `${name}.ext`,
        '-out',
        `${name}.pem`,
      )
    }
  })

  after(async () => {
    for (const server of servers) server.close()
    await s3?.stop()
    rmSync(folder, {force: true, recursive: true})
  })

  /** An HTTPS endpoint with the named certificate, in front of s3rver. */
  async function endpointWith(certificate: string): Promise<string> {
    const server = createServer(
      {cert: readFileSync(join(folder, `${certificate}.pem`)), key: readFileSync(join(folder, `${certificate}.key`))},
      (incoming, response) => {
        const upstream = httpRequest(
          {headers: incoming.headers, host: '127.0.0.1', method: incoming.method, path: incoming.url, port: s3.port},
          (answer) => {
            response.writeHead(answer.statusCode ?? 502, answer.headers)
            answer.pipe(response)
          },
        )
        upstream.on('error', () => response.socket?.destroy())
        incoming.pipe(upstream)
      },
    )
    servers.push(server)
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    return `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  /** A proxy that tunnels CONNECT requests, as corporate egress proxies do, and records where to. */
  async function tunnellingProxy(): Promise<{tunnels: string[]; url: string}> {
    const tunnels: string[] = []
    const server = createHttpServer()
    server.on('connect', (request, socket, head) => {
      tunnels.push(request.url ?? '')
      const [host, port] = (request.url ?? '').split(':')
      const upstream = connect(Number(port), host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        upstream.write(head)
        upstream.pipe(socket)
        socket.pipe(upstream)
      })
      upstream.on('error', () => socket.destroy())
      socket.on('error', () => upstream.destroy())
    })
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    servers.push(server as unknown as Server)
    return {tunnels, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`}
  }

  let buckets = 0
  async function projectOn(certificate: string) {
    const bucket = `tls-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'backups', {endpoint: await endpointWith(certificate)})
    return project
  }

  const cases = [
    {bundle: undefined, certificate: 'self', code: 'DEPTH_ZERO_SELF_SIGNED_CERT', says: /AWS_CA_BUNDLE/},
    {bundle: undefined, certificate: 'right', code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', says: /AWS_CA_BUNDLE/},
    {
      bundle: 'ca.pem',
      certificate: 'wrong',
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      says: /does not name the endpoint's host/,
    },
  ]
  for (const {bundle, certificate, code, says} of cases) {
    it(`a certificate the check refuses (${code}): exit 7 at once, naming it and what to do, nothing stored`, async () => {
      const project = await projectOn(certificate)
      const seen = s3.requests.length
      const result = await cli(project, ['create', '--json'], bundle ? {AWS_CA_BUNDLE: join(folder, bundle)} : {})
      expect(result.status, result.stderr).to.equal(7)
      const {error} = result.json() as Failed
      expect(error.message).to.include(`the service's TLS certificate is not trusted here (${code})`)
      expect(error.suggestion).to.match(says)
      expect(`${error.message} ${error.suggestion}`).to.not.match(/check the network/)
      expect(s3.requests.length, 'no request got through').to.equal(seen)
    })
  }

  it('an https:// endpoint that serves plain HTTP: exit 7, saying so, not the network', async () => {
    const bucket = `tls-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'backups', {endpoint: s3.endpoint.replace('http:', 'https:')})
    const result = await cli(project, ['list', '--json'])
    expect(result.status, result.stderr).to.equal(7)
    const {error} = result.json() as Failed
    expect(error.message).to.include('the endpoint did not answer in TLS (EPROTO, wrong version number)')
    expect(error.suggestion).to.include('http://')
  })

  it('AWS_CA_BUNDLE trusts the authority: create, list and verify work; a bundle that cannot be read is named (exit 2)', async () => {
    for (const certificate of ['right', 'self']) {
      const project = await projectOn(certificate)
      const trusted = {AWS_CA_BUNDLE: join(folder, certificate === 'self' ? 'self.pem' : 'ca.pem')}
      const created = await cli(project, ['create', '--json'], trusted)
      expect(created.status, `${certificate}: ${created.stderr}`).to.equal(0)
      const listed = await cli(project, ['list', '--json'], trusted)
      expect((listed.json() as unknown[]).length, certificate).to.equal(1)
      expect((await cli(project, ['verify', 'latest'], trusted)).status, certificate).to.equal(0)
    }

    const project = await projectOn('right')
    for (const [bundle, says] of [
      [join(folder, 'missing.pem'), /AWS_CA_BUNDLE names \S+missing\.pem, which cannot be read \(ENOENT\)/],
      [join(folder, 'right.csr'), /AWS_CA_BUNDLE names \S+right\.csr, which holds no PEM certificate/],
    ] as const) {
      const result = await cli(project, ['list', '--json'], {AWS_CA_BUNDLE: bundle})
      expect(result.status, result.stderr).to.equal(2)
      expect((result.json() as Failed).error.message).to.match(says)
    }
  })

  it(`HTTPS_PROXY: ${agentsTakeProxies() ? 'every request goes through it, NO_PROXY excepted, and a failure names it' : 'unused on this Node.js line, which a failure says'}`, async () => {
    const project = await projectOn('right')
    const endpoint = new URL(new URL(project.env.DIVIO_BACKUP_STORE!).searchParams.get('endpoint')!)
    const proxy = await tunnellingProxy()
    const trusted = {AWS_CA_BUNDLE: join(folder, 'ca.pem'), HTTPS_PROXY: proxy.url}
    const created = await cli(project, ['create', '--json'], trusted)
    expect(created.status, created.stderr).to.equal(0)
    // No retry waits: the SDK draws its backoff from Math.random, and the commands run in this process.
    const {random} = Math
    Math.random = () => 0
    try {
      if (agentsTakeProxies()) {
        expect(proxy.tunnels.length, 'requests through the proxy').to.be.above(0)
        expect(new Set(proxy.tunnels)).to.deep.equal(new Set([endpoint.host]))
        const tunnels = proxy.tunnels.length
        const direct = await cli(project, ['list', '--json'], {...trusted, NO_PROXY: '127.0.0.1'})
        expect(direct.status, direct.stderr).to.equal(0)
        expect(proxy.tunnels.length, 'NO_PROXY: no tunnel').to.equal(tunnels)
        const deadProxy = await cli(project, ['list', '--json'], {...trusted, HTTPS_PROXY: 'http://127.0.0.1:9'})
        expect(deadProxy.status, deadProxy.stderr).to.equal(7)
        expect((deadProxy.json() as Failed).error.suggestion).to.include(
          'Requests to S3 go through the proxy that HTTPS_PROXY names',
        )
      } else {
        expect(proxy.tunnels).to.deep.equal([])
        project.env.DIVIO_BACKUP_STORE = project.env.DIVIO_BACKUP_STORE!.replace(
          encodeURIComponent(endpoint.origin),
          encodeURIComponent('https://127.0.0.1:9'),
        )
        const unreachable = await cli(project, ['list', '--json'], trusted)
        expect(unreachable.status, unreachable.stderr).to.equal(7)
        expect((unreachable.json() as Failed).error.suggestion).to.include(
          `HTTPS_PROXY is set, but Node.js ${process.version} sends requests to S3 without a proxy: run the command on Node.js 22 or 24`,
        )
      }
    } finally {
      Math.random = random
    }
  })
})
