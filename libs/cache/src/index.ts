export { createRedisClient, waitForRedis, type RedisClient, type RedisClientOptions } from './createRedisClient.js';
export { createCircuitBreaker, CircuitOpenError, type CircuitBreaker, type CircuitBreakerOptions } from './circuitBreaker.js';
export { createCache, StaleKeysOverflowError, type Cache, type CacheCodec, type CacheOptions, type StaleKeyJournal, type Versioned } from './createCache.js';
export { createMemoryCache, type MemoryCacheOptions } from './createMemoryCache.js';
export { createRateLimiter, type RateLimiter, type RateLimiterOptions } from './createRateLimiter.js';
export { checkRedisHealth } from './checkRedisHealth.js';
export { createNearCache, type NearCache, type NearCacheOptions } from './nearCache.js';
