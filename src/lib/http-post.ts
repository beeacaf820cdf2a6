import type {IncomingMessage} from 'node:http'

import {proxyOption} from './proxy.js'

/** Redirects a hook's request follows: enough for a URL that moved, not for a loop. */
const REDIRECTS = 5

/**
 * POSTs `body` to `url` and resolves once the answer is read, or rejects with `HTTP <status>` for an
 * answer that is not 2xx (or with the connection's error). Through the environment's proxy where
 * Node.js can tunnel (proxy.ts): fetch takes no proxy from a plugin, whose host owns the dispatcher.
 * Redirects are followed as fetch follows them: 307 and 308 keep the POST and its body, 301, 302
 * and 303 become a GET without one (a ping URL moved from http to https still pings).
 */
export async function post(
  url: string,
  body: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<void> {
  let target = new URL(url)
  let request: {body?: string; method: 'GET' | 'POST'} = {body, method: 'POST'}
  for (let redirects = 0; ; redirects++) {
    const answer = await send(target, request, headers, signal)
    const status = answer.statusCode ?? 0
    const {location} = answer.headers
    if (status >= 300 && status < 400 && status !== 304 && location && redirects < REDIRECTS) {
      target = new URL(location, target)
      if (status !== 307 && status !== 308) request = {method: 'GET'}
      continue
    }

    if (status < 200 || status >= 300) throw new Error(`HTTP ${status}`)
    return
  }
}

async function send(
  target: URL,
  {body, method}: {body?: string; method: 'GET' | 'POST'},
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<IncomingMessage> {
  const secure = target.protocol === 'https:'
  // Loaded for a hook's first request, not with this module: every command loads it, and node:https
  // (TLS with it) costs a thread that loads it about 15 ms and 3 MiB.
  const {Agent, request: sendRequest} = secure ? await import('node:https') : await import('node:http')
  const agent = new Agent({keepAlive: false, ...proxyOption()})
  // A GET after a redirect carries no body, and so no content type.
  const sent =
    body === undefined
      ? Object.fromEntries(Object.entries(headers).filter(([name]) => name !== 'content-type'))
      : {...headers, 'content-length': String(Buffer.byteLength(body))}
  try {
    return await new Promise<IncomingMessage>((resolve, reject) => {
      const request = sendRequest(target, {agent, headers: sent, method, signal}, (answer) => {
        // The body is not needed; reading it to its end frees the connection.
        answer.on('error', reject)
        answer.on('end', () => resolve(answer))
        answer.resume()
      })
      request.on('error', reject)
      request.end(body)
    })
  } finally {
    agent.destroy()
  }
}
