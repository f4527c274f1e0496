import type { ReplaySubject } from 'rxjs';

/**
 * The type the three traced clients redeclare Nest's protected `_status$` with: a `declare` only,
 * nothing is emitted and Nest's field is untouched. The one reason for it: `ClientsModule.register`
 * types `customClass` as `Type<ClientProxy>` (status `string`), and under `strict` Nest's own
 * `ClientNats` / `ClientRMQ` / `ClientKafka` are not assignable to it, as their `_status$` is a
 * `ReplaySubject` of a narrower status and a subject is invariant in its type (checked with the
 * typings of @nestjs/microservices 11.1.4, 11.2.6 and 12.1.1). Widening it lets users write
 * `customClass: OtelClientNats` without a cast. A shared mixin cannot carry it instead: TypeScript
 * emits no declarations for a class expression with protected members (TS4094).
 */
export type ClientStatusSubject = ReplaySubject<any>;
