import {Store} from '../../src/store/port.js'

/** `store`, counting how often each object is opened for reading (`gets`, by key). */
export function countingGets(store: Store): {gets: Map<string, number>; store: Store} {
  const gets = new Map<string, number>()
  return {
    gets,
    store: Object.assign(Object.create(store) as Store, {
      async get(key: string) {
        gets.set(key, (gets.get(key) ?? 0) + 1)
        return store.get(key)
      },
    }),
  }
}
