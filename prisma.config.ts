import { defineConfig } from 'prisma/config';

// Only `prisma generate` is used: migrations are applied by the kernel's own runner
// (services/platform/migrations), because Prisma's schema engine is not available here.
export default defineConfig({
  schema: 'prisma/schema',
});
