/**
 * Grafast reads GRAPHILE_ENV once, when it is loaded, and prints a warning at every start when neither
 * GRAPHILE_ENV nor NODE_ENV is set. The documented fix is to set the variable: we run in production
 * mode unless the operator chose otherwise (GRAPHILE_ENV=development adds Grafast's extra checks and
 * friendlier errors, at the cost of slower planning). Import this module before anything from
 * postgraphile (ES modules evaluate their imports in order).
 */
if (process.env.GRAPHILE_ENV === undefined && process.env.NODE_ENV === undefined) process.env.GRAPHILE_ENV = 'production';
