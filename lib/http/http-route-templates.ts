import { Injectable, Optional, RequestMethod, VERSION_NEUTRAL, VersioningType, type OnApplicationBootstrap } from '@nestjs/common';
import { METHOD_METADATA, MODULE_PATH, PATH_METADATA, VERSION_METADATA } from '@nestjs/common/constants.js';
import { ApplicationConfig, MetadataScanner, ModulesContainer } from '@nestjs/core';
import { httpRouteTemplatesFailed } from '../otel.messages.js';
import { diagLimited } from '../utils/diag-limited.js';

/** One route of the application: its method (`GET`, or `ALL` for `@All()`) and its path template as registered. */
export interface RouteTemplate {
  readonly method: string;
  /** As Nest registers it and reports it to `setOnRouteTriggered`: `/api/v1/orders/:id`. */
  readonly template: string;
}

interface CompiledRoute {
  readonly template: string;
  readonly regExp: RegExp;
  /** Registration order: the router tries routes in this order. */
  readonly index: number;
}

/** A node of the literal-prefix tree: the routes whose literal path prefix ends here, and the longer prefixes. */
interface PrefixNode {
  readonly children: Map<string, PrefixNode>;
  /** In registration order. */
  readonly routes: CompiledRoute[];
}

function escapeRegExp(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\/*]/g, '\\$&');
}

/**
 * The RegExp that matches the request paths of a Nest route template, as express 5 matches them
 * (path-to-regexp 8: `:id` one segment, `*name` one or more characters, `{...}` optional; Nest's
 * legacy `*` and `(.*)` anything), case-insensitively, with an optional trailing slash.
 * Undefined for a template it does not understand (the route is then left to the handler).
 */
export function compileRouteTemplate(template: string): RegExp | undefined {
  let source = '';
  let depth = 0;
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === ':') {
      const name = /^[A-Za-z_$][\w$]*/.exec(template.slice(i + 1))?.[0];
      if (!name) {
        return undefined;
      }
      source += '[^/]+';
      i += name.length;
    } else if (c === '*') {
      const name = /^[A-Za-z_$][\w$]*/.exec(template.slice(i + 1))?.[0];
      source += name ? '.+' : '.*';
      i += name?.length ?? 0;
    } else if (template.startsWith('(.*)', i)) {
      source += '.*';
      i += 3;
    } else if (c === '{') {
      source += '(?:';
      depth++;
    } else if (c === '}') {
      if (depth === 0) {
        return undefined;
      }
      source += ')?';
      depth--;
    } else if (c === '\\' && i + 1 < template.length) {
      source += escapeRegExp(template[++i]!);
    } else if (c === '(' || c === ')' || c === '?' || c === '+' || c === '[' || c === ']') {
      // Regex-like syntax path-to-regexp 8 rejects: Nest could not have registered it as such.
      return undefined;
    } else {
      source += escapeRegExp(c);
    }
  }
  if (depth !== 0) {
    return undefined;
  }
  try {
    return new RegExp(`^${source}/?$`, 'i');
  } catch {
    return undefined;
  }
}

/** The literal leading segments of a template (lower case), up to the first with a parameter or wildcard. */
function literalSegments(template: string): string[] {
  const segments: string[] = [];
  for (const segment of template.split('/').slice(1)) {
    if (/[:*{}()\\]/.test(segment)) {
      break;
    }
    segments.push(segment.toLowerCase());
  }
  return segments;
}

function newNode(): PrefixNode {
  return { children: new Map(), routes: [] };
}

/**
 * Finds the route template of a request path before the router does, so that the HTTP SERVER
 * span starts with `http.route` (the semantic conventions ask for it at creation, for samplers).
 * The first route in registration order that matches wins, as in express. Routes hang in a tree
 * of their literal leading segments (`/api/v1/orders/:id` under `api` → `v1` → `orders`): a lookup
 * walks the path's segments down it and tests only the routes on that walk.
 */
export class RouteTemplateMatcher {
  private readonly byMethod = new Map<string, PrefixNode>();
  private readonly any: PrefixNode;
  readonly size: number;

  constructor(routes: readonly RouteTemplate[]) {
    const compiled: Array<CompiledRoute & { method: string }> = [];
    routes.forEach((route, index) => {
      const regExp = compileRouteTemplate(route.template);
      if (regExp) {
        compiled.push({ template: route.template, regExp, index, method: route.method.toUpperCase() });
      }
    });
    this.size = compiled.length;
    const build = (accepts: (method: string) => boolean): PrefixNode => {
      const root = newNode();
      for (const route of compiled) {
        if (!accepts(route.method)) {
          continue;
        }
        let node = root;
        for (const segment of literalSegments(route.template)) {
          let child = node.children.get(segment);
          if (!child) {
            child = newNode();
            node.children.set(segment, child);
          }
          node = child;
        }
        node.routes.push(route);
      }
      return root;
    };
    for (const method of new Set(compiled.map((route) => route.method))) {
      if (method !== 'ALL') {
        // express serves HEAD with a GET route when there is no HEAD route before it.
        this.byMethod.set(method, build((m) => m === method || m === 'ALL' || (method === 'HEAD' && m === 'GET')));
      }
    }
    if (!this.byMethod.has('HEAD')) {
      this.byMethod.set('HEAD', build((m) => m === 'HEAD' || m === 'GET' || m === 'ALL'));
    }
    this.any = build((m) => m === 'ALL');
  }

  /** The template of the first route that serves `method` `path` (no query), else undefined. */
  match(method: string, path: string): string | undefined {
    let node: PrefixNode | undefined = this.byMethod.get(method) ?? this.any;
    let best: CompiledRoute | undefined;
    let start = 1;
    while (node !== undefined) {
      for (const route of node.routes) {
        if (best !== undefined && route.index > best.index) {
          break;
        }
        if (route.regExp.test(path)) {
          best = route;
          break;
        }
      }
      if (start > path.length) {
        break;
      }
      let end = path.indexOf('/', start);
      if (end < 0) {
        end = path.length;
      }
      const segment = path.slice(start, end);
      node = node.children.get(segment) ?? node.children.get(segment.toLowerCase());
      start = end + 1;
    }
    return best?.template;
  }
}

function stripEndSlash(path: string): string {
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}

function withLeadingSlash(path: string): string {
  return path.startsWith('/') ? path : `/${path}`;
}

function join(base: string, fragment: string | undefined): string {
  return fragment ? stripEndSlash(base) + withLeadingSlash(fragment) : base;
}

function asList<T>(value: T | readonly T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? [...(value as readonly T[])] : [value as T];
}

type VersionValue = string | symbol | Array<string | symbol>;

/**
 * The route templates of an application, built from the metadata Nest's router reads
 * (`@Controller` / `@Get` paths and methods, `@Version`, `RouterModule` paths) and the
 * application's public configuration (global prefix and its exclusions, versioning), in the
 * order Nest registers them: what `RoutePathFactory` makes of them, for URI versioning
 * (header, media-type and custom versioning do not change the path).
 */
export function collectRouteTemplates(modules: ModulesContainer, config: ApplicationConfig): RouteTemplate[] {
  const scanner = new MetadataScanner();
  const globalPrefix = config.getGlobalPrefix();
  const excluded = (config.getGlobalPrefixOptions() as { exclude?: Array<{ requestMethod: number; pathRegex?: RegExp }> }).exclude ?? [];
  const versioning = config.getVersioning();
  const routes: RouteTemplate[] = [];
  for (const module of modules.values()) {
    const modulePath: string | undefined =
      Reflect.getMetadata(MODULE_PATH + modules.applicationId, module.metatype) ?? Reflect.getMetadata(MODULE_PATH, module.metatype);
    for (const wrapper of module.controllers.values()) {
      const metatype = wrapper.metatype as (new (...args: never[]) => object) | null;
      if (typeof metatype !== 'function') {
        continue;
      }
      const controllerPaths = asList<string>(Reflect.getMetadata(PATH_METADATA, metatype));
      const controllerVersion: VersionValue | undefined = versioning
        ? (Reflect.getMetadata(VERSION_METADATA, metatype) ?? versioning.defaultVersion)
        : undefined;
      const prototype = metatype.prototype as Record<string, unknown>;
      for (const methodName of scanner.getAllMethodNames(prototype)) {
        const callback = prototype[methodName];
        if (typeof callback !== 'function') {
          continue;
        }
        const methodPaths: string | string[] | undefined = Reflect.getMetadata(PATH_METADATA, callback);
        if (methodPaths === undefined) {
          continue;
        }
        const requestMethod: number = Reflect.getMetadata(METHOD_METADATA, callback) ?? RequestMethod.GET;
        const version: VersionValue | undefined = Reflect.getMetadata(VERSION_METADATA, callback) ?? controllerVersion;
        const versionPrefixes =
          version !== undefined && versioning?.type === VersioningType.URI
            ? asList(version).map((v) =>
                v === VERSION_NEUTRAL ? '' : `/${versioning.prefix === false ? '' : (versioning.prefix ?? 'v')}${String(v)}`,
              )
            : [''];
        const method = RequestMethod[requestMethod] ?? 'ALL';
        for (const versionPrefix of versionPrefixes) {
          for (const controllerPath of controllerPaths.length > 0 ? controllerPaths : ['/']) {
            for (const methodPath of asList<string>(methodPaths)) {
              let path = join(join(join(versionPrefix, modulePath), controllerPath), methodPath);
              const unprefixed = path.slice(versionPrefix.length);
              const isExcluded = excluded.some(
                (route) =>
                  (route.requestMethod === RequestMethod.ALL || route.requestMethod === -1 || route.requestMethod === requestMethod) &&
                  route.pathRegex?.test(withLeadingSlash(unprefixed)) === true,
              );
              if (globalPrefix && !isExcluded) {
                path = stripEndSlash(withLeadingSlash(globalPrefix)) + path;
              }
              path = withLeadingSlash(path || '/');
              routes.push({ method, template: path !== '/' ? stripEndSlash(path) : path });
            }
          }
        }
      }
    }
  }
  return routes;
}

/**
 * The application's route templates, read once at bootstrap (after Nest registered its routes,
 * before the first request), for {@link HttpServerInstrumentation} to start each SERVER span with
 * its `http.route`. express only: fastify has routed the request before the request hook runs,
 * and says which route (`request.routeOptions.url`).
 */
@Injectable()
export class HttpRouteTemplates implements OnApplicationBootstrap {
  private matcher: RouteTemplateMatcher | undefined;

  constructor(
    @Optional() private readonly modules?: ModulesContainer,
    @Optional() private readonly config?: ApplicationConfig,
  ) {}

  onApplicationBootstrap(): void {
    this.refresh();
  }

  /** Reads the templates again (the HTTP instrumentation does when it is installed late). */
  refresh(): void {
    if (!this.modules || !this.config) {
      return;
    }
    try {
      const matcher = new RouteTemplateMatcher(collectRouteTemplates(this.modules, this.config));
      this.matcher = matcher.size > 0 ? matcher : undefined;
    } catch (err) {
      diagLimited('warn', httpRouteTemplatesFailed(), err);
      this.matcher = undefined;
    }
  }

  /** The template of `method` `path`, when one of the application's routes serves it. */
  match(method: string, path: string): string | undefined {
    return this.matcher?.match(method, path);
  }
}

/**
 * The route template of a request when its SERVER span starts: fastify has routed it already
 * (`request.routeOptions.url`, public since fastify 4.10); for express, the application's
 * templates tell. Undefined when no route serves it (a 404 keeps only `url.path`).
 */
export function routeAtStart(
  templates: HttpRouteTemplates | undefined,
  method: string | undefined,
  path: string,
  fastifyRequest: unknown,
): string | undefined {
  if (fastifyRequest !== undefined) {
    const url = (fastifyRequest as { routeOptions?: { url?: unknown } }).routeOptions?.url;
    return typeof url === 'string' && url !== '' ? url : undefined;
  }
  return method === undefined ? undefined : templates?.match(method, path);
}
