import {createServer, request as httpRequest, IncomingMessage, Server, ServerResponse} from 'node:http'
import {AddressInfo} from 'node:net'

/**
 * What to do with one request:
 * - `reset`: read a little of it, then drop the connection (ECONNRESET on the client);
 * - `cut`: forward it, then drop the connection half-way through the response body;
 * - `{status, code}`: answer with that S3 error without forwarding;
 * - `hang`: read all of it, and never answer (a service that stopped responding);
 * - `{answer}`: forward it, and change the answer: its body (a listing that names storage classes
 *   s3rver does not keep) and its headers;
 * - undefined: forward it untouched.
 */
export type Fault =
  | 'cut'
  | 'hang'
  | 'reset'
  | undefined
  | {answer: {body?: (body: string) => string; headers?: Record<string, string>}}
  | {code: string; status: number}

export interface ProxiedRequest {
  method: string
  path: string
  query: URLSearchParams
}

/**
 * A loopback HTTP proxy in front of a test S3 server that injects faults into chosen requests. It works
 * across processes, so the CLI under test meets the faults exactly as it would meet a flaky S3.
 */
export class FaultyProxy {
  private constructor(
    private readonly server: Server,
    readonly port: number,
    /** Every fault injected so far, for assertions that the faults really happened. */
    readonly injected: Array<{fault: Exclude<Fault, undefined>; request: ProxiedRequest}>,
  ) {}

  static async start(targetPort: number, decide: (request: ProxiedRequest) => Fault): Promise<FaultyProxy> {
    const injected: FaultyProxy['injected'] = []
    const server = createServer((incoming, response) => {
      const url = new URL(incoming.url ?? '/', 'http://proxy')
      const request = {
        method: incoming.method ?? 'GET',
        path: decodeURIComponent(url.pathname),
        query: url.searchParams,
      }
      const fault = decide(request)
      if (fault !== undefined) injected.push({fault, request})
      if (fault === 'reset') {
        incoming.once('data', () => incoming.socket.destroy())
        incoming.once('end', () => incoming.socket.destroy())
        return
      }

      if (fault === 'hang') {
        incoming.resume()
        return
      }

      if (typeof fault === 'object' && 'answer' in fault) {
        forward(incoming, response, targetPort, fault.answer)
        return
      }

      if (typeof fault === 'object') {
        incoming.resume()
        incoming.once('end', () => {
          response.writeHead(fault.status, {'content-type': 'application/xml'})
          response.end(
            `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected by the test</Message></Error>`,
          )
        })
        return
      }

      forward(incoming, response, targetPort, fault === 'cut' ? 'cut' : undefined)
    })
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    return new FaultyProxy(server, (server.address() as AddressInfo).port, injected)
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise((resolve) => {
      this.server.close(resolve)
    })
  }
}

function forward(
  incoming: IncomingMessage,
  response: ServerResponse,
  targetPort: number,
  how: 'cut' | undefined | {body?: (body: string) => string; headers?: Record<string, string>},
): void {
  const cut = how === 'cut'
  const change = typeof how === 'object' ? how : undefined
  const upstream = httpRequest(
    {headers: incoming.headers, host: '127.0.0.1', method: incoming.method, path: incoming.url, port: targetPort},
    (answer) => {
      if (change) {
        const chunks: Buffer[] = []
        answer.on('data', (chunk: Buffer) => chunks.push(chunk))
        answer.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          const body = Buffer.from(change.body ? change.body(text) : text)
          response.writeHead(answer.statusCode ?? 502, {
            ...answer.headers,
            ...change.headers,
            // A HEAD's length is the object's, and it has no body.
            ...(incoming.method === 'HEAD' ? {} : {'content-length': String(body.length)}),
          })
          response.end(incoming.method === 'HEAD' ? undefined : body)
        })
        return
      }

      response.writeHead(answer.statusCode ?? 502, answer.headers)
      if (!cut) {
        answer.pipe(response)
        return
      }

      const length = Number(answer.headers['content-length'] ?? 0)
      let sent = 0
      answer.on('data', (chunk: Buffer) => {
        if (sent >= length / 2) {
          answer.destroy()
          response.socket?.destroy()
          return
        }

        sent += chunk.length
        response.write(chunk)
      })
      answer.on('end', () => response.end())
    },
  )
  upstream.on('error', () => response.socket?.destroy())
  incoming.pipe(upstream)
}
