import {createServer, IncomingMessage, Server, ServerResponse} from 'node:http'
import {AddressInfo} from 'node:net'

export interface ReceivedRequest {
  body: string
  method: string
  path: string
}

/**
 * An HTTP server on loopback that records what hooks send it. `answer` decides each response: a status
 * code, a redirect (`{status, location}`), or `hang` to accept the request and never answer.
 */
export class HookServer {
  readonly received: ReceivedRequest[] = []
  private readonly hanging: ServerResponse[] = []

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** A loopback URL on which nothing listens: a port just freed. */
  static async closedUrl(): Promise<string> {
    const server = createServer()
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    const {port} = server.address() as AddressInfo
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
    })
    return `http://127.0.0.1:${port}`
  }

  static async start(
    answer: (request: ReceivedRequest, index: number) => 'hang' | number | {location: string; status: number} = () =>
      200,
  ): Promise<HookServer> {
    const self: {hooks?: HookServer} = {}
    const server = createServer((request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = []
      request.on('data', (chunk: Buffer) => chunks.push(chunk))
      request.on('end', () => {
        const received = {
          body: Buffer.concat(chunks).toString('utf8'),
          method: request.method ?? '',
          path: request.url ?? '',
        }
        self.hooks!.received.push(received)
        const status = answer(received, self.hooks!.received.length - 1)
        if (status === 'hang') {
          self.hooks!.hanging.push(response)
          return
        }

        if (typeof status === 'object') response.writeHead(status.status, {location: status.location}).end()
        else response.writeHead(status).end('ok')
      })
    })
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    self.hooks = new HookServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
    return self.hooks
  }

  async stop(): Promise<void> {
    for (const response of this.hanging) response.destroy()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
    })
  }
}
