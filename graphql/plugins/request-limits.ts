/**
 * Bounds what one request may ask of the API (src/server/api-limits.ts), with the means PostGraphile v5
 * offers, each before any SQL runs:
 *
 * - the body: grafserv's `maxRequestLength` (set in graphql/preset.ts) reads no more than the limit;
 *   this plugin's grafserv middleware refuses a declared Content-Length over it without reading, and
 *   words the 413 (grafserv's says "Too much data");
 * - the operation: grafast `execute` / `subscribe` middleware measures it with its variables
 *   (graphql/plugins/operation-size.ts) and answers with errors instead of running it. A validation
 *   rule cannot do this part: it sees no variable values (`first: $n`) and its result is cached by
 *   query text;
 * - a connection given neither `first` nor `last` reads the default page: the connection fields' plans
 *   set `first` (PostGraphile applies the `first` argument only when it is given, so the two never meet).
 */
import { ConstantStep, SafeError, isSafeError, type ConnectionStep, type Step } from 'postgraphile/grafast';
import { LIMIT_EXCEEDED, LIMIT_SETTINGS, type ApiLimits } from '../../src/server/api-limits.ts';
import { limitViolations, type OperationArgs } from './operation-size.ts';

/** The 413 refusal of a body over the limit (`declared`: its Content-Length, when it had one). */
function bodyTooLarge(limits: ApiLimits, declared: number | undefined): SafeError {
  const size = declared === undefined ? `more than ${limits.maxBodyBytes} bytes` : `${declared} bytes`;
  return new SafeError(
    `the request body has ${size}; the limit is ${limits.maxBodyBytes} bytes (${LIMIT_SETTINGS.maxBodyBytes}): send a smaller request, or raise ${LIMIT_SETTINGS.maxBodyBytes}`,
    { statusCode: 413, code: LIMIT_EXCEEDED, limit: LIMIT_SETTINGS.maxBodyBytes, max: limits.maxBodyBytes, requested: declared ?? null },
  );
}

/** An argument the operation does not give: PostGraphile plans those as constant(undefined). */
function absent($arg: Step | undefined): boolean {
  return $arg === undefined || ($arg instanceof ConstantStep && $arg.data === undefined);
}

/** The plugin enforcing `limits` (the same object the preset gives grafserv's maxRequestLength). */
export function makeRequestLimitsPlugin(limits: ApiLimits): GraphileConfig.Plugin {
  const refuse = (args: OperationArgs) => {
    const errors = limitViolations(args, limits);
    return errors.length > 0 ? { errors } : undefined;
  };
  return {
    name: 'DsxRequestLimitsPlugin',
    version: '1.0.0',
    schema: {
      hooks: {
        GraphQLObjectType_fields_field(field, _build, context) {
          const plan = field.plan;
          if (!context.scope.isPgFieldConnection || typeof plan !== 'function') return field;
          return {
            ...field,
            plan($parent, fieldArgs, info) {
              const $connection = plan($parent, fieldArgs, info) as ConnectionStep<any, any, any, any> | null;
              if ($connection && typeof $connection.setFirst === 'function' && absent(fieldArgs.getRaw('first')) && absent(fieldArgs.getRaw('last'))) {
                $connection.setFirst(limits.defaultPageSize);
              }
              return $connection;
            },
          };
        },
      },
    },
    grafast: {
      middleware: {
        execute(next, event) {
          return refuse(event.args) ?? next();
        },
        subscribe(next, event) {
          return refuse(event.args) ?? next();
        },
      },
    },
    grafserv: {
      middleware: {
        processRequest(next, event) {
          const digest = event.requestDigest;
          if (digest.method === 'POST') {
            const header = digest.headers['content-length'];
            const declared = header === undefined ? undefined : Number(header);
            const read = digest.getBody.bind(digest);
            digest.getBody = async () => {
              if (declared !== undefined && declared > limits.maxBodyBytes) throw bodyTooLarge(limits, declared);
              try {
                return await read();
              } catch (err) {
                // grafserv stopped reading at maxRequestLength (a body sent without Content-Length).
                if (err instanceof Error && isSafeError(err) && err.extensions?.statusCode === 413) throw bodyTooLarge(limits, undefined);
                throw err;
              }
            };
          }
          return next();
        },
      },
    },
  };
}
