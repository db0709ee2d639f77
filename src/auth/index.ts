export { ApiKeyAuthProvider, type ApiKey, type ApiKeyAuthProviderOptions } from './api-key.js'
export { JwtAuthProvider, type JwtAuthProviderOptions } from './jwt.js'
export { OAuthAuthProvider, type OAuthAuthProviderOptions, type OAuthJwtValidation, type OAuthIntrospectionValidation } from './oauth.js'
export {
  McpAuthError,
  bearerToken,
  type AuthProvider,
  type AuthResult,
  type AuthErrorInfo,
  type McpAuthFailureReason,
  type McpAuthOptions,
  type McpAuthEndpoints,
  type ProtectedResourceMetadata
} from './types.js'
