import {parentPort} from 'node:worker_threads'

import {serveCipherRequests} from './cipher-server.js'

/** The cipher thread (cipher-thread.ts): its work is in cipher-server.ts, served to whoever started it. */
serveCipherRequests(parentPort!)
