import {createServer, Server, Socket} from 'node:net'

/**
 * A TCP server on loopback that accepts connections and never answers: an endpoint that hangs, as a
 * stalled S3 service or a half-dead proxy does. It reads what it is sent, so that a test can wait until
 * a request has reached it instead of guessing how long a process takes to start.
 */
export class BlackHole {
  /** What each connection has sent: the head of its first request. */
  private readonly received = new Map<Socket, string>()

  private constructor(private readonly server: Server) {
    server.on('connection', (socket) => {
      this.received.set(socket, '')
      socket.on('error', () => {})
      // The head of the first request is read, and then nothing more, as a hung service reads nothing.
      socket.setEncoding('latin1').on('data', (chunk: string) => {
        const sent = (this.received.get(socket) ?? '') + chunk
        this.received.set(socket, sent)
        if (sent.includes('\r\n\r\n') || sent.length > 65_536) socket.pause()
      })
    })
  }

  static async start(): Promise<BlackHole> {
    const server = createServer()
    await new Promise<void>((resolve) => {
      server.listen(0, '127.0.0.1', resolve)
    })
    return new BlackHole(server)
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.server.address() as {port: number}).port}`
  }

  /** Whether a connection has sent `text`: a test polls it with `until` (helpers/processes.ts). */
  hasReceived(text: string): boolean {
    return [...this.received.values()].some((sent) => sent.includes(text))
  }

  stop(): void {
    for (const socket of this.received.keys()) socket.destroy()
    this.server.close()
  }
}
