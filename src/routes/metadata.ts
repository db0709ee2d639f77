import type { FastifyInstance } from 'fastify'
import type { ProtectedResourceMetadata } from '../auth/types.js'

/**
 * RFC 9728 documents live at well-known paths on the host, whatever prefix the MCP
 * routes have. Public, cacheable, readable from any origin.
 */
export async function resourceMetadataRoutes (scope: FastifyInstance, { metadata }: { metadata: ProtectedResourceMetadata }): Promise<void> {
  const body = JSON.stringify(metadata.document)
  for (const path of metadata.paths) {
    scope.get(path, (_request, reply) => {
      reply
        .header('access-control-allow-origin', '*')
        .header('cache-control', 'public, max-age=3600')
        .type('application/json; charset=utf-8')
        .send(body)
    })
  }
}
