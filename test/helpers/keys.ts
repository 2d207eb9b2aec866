/**
 * The Redis key of a session id, as the store names it: `sess:<id>` on one server; on Redis Cluster
 * the id's first 8 characters form a hash tag, which the ids it is regenerated into share.
 */
export function sessionKey(id: string, cluster = false, prefix = 'sess:'): string {
  return cluster ? `${prefix}{${id.slice(0, 8)}}${id.slice(8)}` : prefix + id;
}
