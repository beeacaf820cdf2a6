import {createServer, Server, Socket} from 'node:net'

/**
 * A TCP server on loopback that accepts connections and never answers: an endpoint that hangs, as a
 * stalled S3 service or a half-dead proxy does.
 */
export class BlackHole {
  private readonly sockets = new Set<Socket>()

  private constructor(private readonly server: Server) {
    server.on('connection', (socket) => {
      this.sockets.add(socket)
      socket.on('error', () => {})
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

  stop(): void {
    for (const socket of this.sockets) socket.destroy()
    this.server.close()
  }
}
