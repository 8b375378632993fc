/**
 * Our SQL functions name their parameters `p_<name>`; GraphQL arguments drop the prefix, so
 * dsx.create_scope(p_integration_id, ...) becomes createScope(input: {integrationId, ...}).
 */
export const ArgumentNamesPlugin: GraphileConfig.Plugin = {
  name: 'DsxArgumentNamesPlugin',
  version: '1.0.0',
  inflection: {
    replace: {
      argument(previous, options, details) {
        const name = details.param.name;
        if (name && name.startsWith('p_')) return this.coerceToGraphQLName(this.camelCase(name.slice(2)));
        return previous!(details);
      },
    },
  },
};
