/**
 * Attribute names this library emits. Stable names come from `@opentelemetry/semantic-conventions`;
 * names that are still incubating there are spelled out here (the package asks consumers to copy
 * incubating names rather than import its unstable entry point).
 */
export {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_EXCEPTION_MESSAGE,
  ATTR_EXCEPTION_STACKTRACE,
  ATTR_EXCEPTION_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_METHOD_ORIGINAL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
  ERROR_TYPE_VALUE_OTHER,
} from '@opentelemetry/semantic-conventions';

/** Prefix of opt-in request header attributes: `http.request.header.<lower-case name>`. */
export const ATTR_HTTP_REQUEST_HEADER_PREFIX = 'http.request.header.';
/** Prefix of opt-in response header attributes. */
export const ATTR_HTTP_RESPONSE_HEADER_PREFIX = 'http.response.header.';

// Captured bodies and message headers (opt-in). No semantic convention names a body or a generic
// message header attribute, so they live in the library's namespace. `.content` rather than the
// bare `...body`, which would coincide with the namespace of `.truncated` (the conventions' rule).
/** The request body as the framework parsed it, JSON or text, cut to the byte budget. */
export const ATTR_NESTJS_HTTP_REQUEST_BODY = 'nestjs.http.request.body.content';
/** `true` when the recorded request body was cut to the byte budget; never set otherwise. */
export const ATTR_NESTJS_HTTP_REQUEST_BODY_TRUNCATED = 'nestjs.http.request.body.truncated';
export const ATTR_NESTJS_HTTP_RESPONSE_BODY = 'nestjs.http.response.body.content';
export const ATTR_NESTJS_HTTP_RESPONSE_BODY_TRUNCATED = 'nestjs.http.response.body.truncated';
/** Prefix of captured message headers: `nestjs.message.header.<lower-case name>`, string arrays. */
export const ATTR_NESTJS_MESSAGE_HEADER_PREFIX = 'nestjs.message.header.';
/** A message payload (consumed or sent), JSON or text, cut to the byte budget. */
export const ATTR_NESTJS_MESSAGE_BODY = 'nestjs.message.body.content';
export const ATTR_NESTJS_MESSAGE_BODY_TRUNCATED = 'nestjs.message.body.truncated';

/** `code.function.name`: the fully-qualified method a `@Traced` span wraps (`OrdersService.place`). */
export const ATTR_CODE_FUNCTION_NAME = 'code.function.name';

// Messaging (incubating). The names of semantic conventions v1.44, which every transport emits.
// `@opentelemetry/semantic-conventions` 1.45 marks some as deprecated in favour of new names
// (`messaging.system` -> `messaging.system.name`, `messaging.kafka.*` -> `kafka.*`,
// `messaging.rabbitmq.*` -> `rabbitmq.*`); messaging is still Development, whose rules ask an
// instrumentation not to change what it emits by default, so these stay until an opt-in exists.
export const ATTR_MESSAGING_SYSTEM = 'messaging.system';
export const ATTR_MESSAGING_OPERATION_NAME = 'messaging.operation.name';
export const ATTR_MESSAGING_OPERATION_TYPE = 'messaging.operation.type';
export const ATTR_MESSAGING_DESTINATION_NAME = 'messaging.destination.name';
/** Low-cardinality form of the destination: the wildcard pattern a handler subscribed with. */
export const ATTR_MESSAGING_DESTINATION_TEMPLATE = 'messaging.destination.template';
export const ATTR_MESSAGING_DESTINATION_TEMPORARY = 'messaging.destination.temporary';
export const ATTR_MESSAGING_DESTINATION_ANONYMOUS = 'messaging.destination.anonymous';
export const ATTR_MESSAGING_DESTINATION_PARTITION_ID = 'messaging.destination.partition.id';
export const ATTR_MESSAGING_MESSAGE_ID = 'messaging.message.id';
export const ATTR_MESSAGING_MESSAGE_CONVERSATION_ID = 'messaging.message.conversation_id';
export const ATTR_MESSAGING_MESSAGE_BODY_SIZE = 'messaging.message.body.size';
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = 'messaging.batch.message_count';
export const ATTR_MESSAGING_CONSUMER_GROUP_NAME = 'messaging.consumer.group.name';
export const ATTR_MESSAGING_CLIENT_ID = 'messaging.client.id';
export const ATTR_MESSAGING_KAFKA_MESSAGE_KEY = 'messaging.kafka.message.key';
export const ATTR_MESSAGING_KAFKA_OFFSET = 'messaging.kafka.offset';
/** `true` on a record whose value is null (a tombstone); never set otherwise. */
export const ATTR_MESSAGING_KAFKA_MESSAGE_TOMBSTONE = 'messaging.kafka.message.tombstone';
export const ATTR_MESSAGING_RABBITMQ_ROUTING_KEY = 'messaging.rabbitmq.destination.routing_key';
export const ATTR_MESSAGING_RABBITMQ_DELIVERY_TAG = 'messaging.rabbitmq.message.delivery_tag';
/** QoS level (0, 1, 2) of an MQTT message; the conventions define no MQTT attributes, so it is namespaced. */
export const ATTR_NESTJS_MQTT_QOS = 'nestjs.mqtt.qos';
/** The retain flag of an MQTT message. */
export const ATTR_NESTJS_MQTT_RETAIN = 'nestjs.mqtt.retain';

/** The Nest pattern of a microservice handler, as given to `@MessagePattern` / `@EventPattern`. */
export const ATTR_NESTJS_PATTERN = 'nestjs.pattern';
/** `message` (request-reply, `@MessagePattern`) or `event` (`@EventPattern`). */
export const ATTR_NESTJS_HANDLER_TYPE = 'nestjs.handler.type';
/** The controller class and method that handled a request: `OrdersController.findOne`. */
export const ATTR_NESTJS_CONTROLLER = 'nestjs.controller';
export const ATTR_NESTJS_HANDLER = 'nestjs.handler';

// RPC (semantic conventions v1.39+; incubating, so spelled out here). What the gRPC transport emits.
export const ATTR_RPC_SYSTEM_NAME = 'rpc.system.name';
/** The fully-qualified method, `package.Service/Method`; `_OTHER` for a method the server does not know. */
export const ATTR_RPC_METHOD = 'rpc.method';
/** The method as received, set only when `rpc.method` is `_OTHER`. */
export const ATTR_RPC_METHOD_ORIGINAL = 'rpc.method_original';
/** The gRPC status as its name: `OK`, `NOT_FOUND`, `DEADLINE_EXCEEDED`. */
export const ATTR_RPC_STATUS_CODE = 'rpc.status_code';
/** Per-message span events (opt-in): `rpc.message` with type `SENT` / `RECEIVED`, id and size. */
export const RPC_MESSAGE_EVENT = 'rpc.message';
export const ATTR_RPC_MESSAGE_TYPE = 'rpc.message.type';
export const ATTR_RPC_MESSAGE_ID = 'rpc.message.id';
export const ATTR_RPC_MESSAGE_UNCOMPRESSED_SIZE = 'rpc.message.uncompressed_size';
// The pre-1.39 names @opentelemetry/instrumentation-grpc emits, added on request (`rpc/dup`).
export const ATTR_RPC_SYSTEM = 'rpc.system';
export const ATTR_RPC_SERVICE = 'rpc.service';
export const ATTR_RPC_GRPC_STATUS_CODE = 'rpc.grpc.status_code';

// Guard, pipe, interceptor and filter spans (opt-in `enhancerSpans`). `nestjs.type` is the key
// @opentelemetry/instrumentation-nestjs-core uses for the kind of a Nest span; the values here
// are the enhancer kinds.
/** `guard`, `pipe`, `interceptor` or `filter`. */
export const ATTR_NESTJS_TYPE = 'nestjs.type';
/** The enhancer's class name: `AuthGuard`, `ValidationPipe`. */
export const ATTR_NESTJS_ENHANCER_NAME = 'nestjs.enhancer.name';
/** What a guard answered: `false` denies the request (403), which is not an error of the guard. */
export const ATTR_NESTJS_GUARD_RESULT = 'nestjs.guard.result';
/** The kind of argument a pipe transformed: `body`, `query`, `param` or `custom`. */
export const ATTR_NESTJS_PIPE_ARGUMENT_TYPE = 'nestjs.pipe.argument.type';
/** The argument's name when the decorator gives one (`@Param('id')` → `id`). */
export const ATTR_NESTJS_PIPE_ARGUMENT_NAME = 'nestjs.pipe.argument.name';
/** The class of the exception an exception filter handled. */
export const ATTR_NESTJS_FILTER_EXCEPTION_TYPE = 'nestjs.filter.exception.type';
/** On the spans kept of a collapsed group: how many calls the group had. */
export const ATTR_NESTJS_ENHANCER_CALLS = 'nestjs.enhancer.calls';
/** On the spans kept of a collapsed group: how many of its calls have no span. */
export const ATTR_NESTJS_ENHANCER_COLLAPSED = 'nestjs.enhancer.collapsed';
