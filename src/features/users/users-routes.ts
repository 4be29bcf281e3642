import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Principal } from "../../platform/context.ts";
import { DomainError, forbidden } from "../../platform/errors.ts";
import { rowIdOrNotFound } from "../../platform/resource.ts";
import { actorOf } from "../auth/authenticate.ts";
import type { RegistrationThrottle } from "./registration-throttle.ts";
import { type User, type UsersService, usernamePattern } from "./users-service.ts";

const Username = Type.String({ minLength: 1, maxLength: 150, pattern: usernamePattern });
const GroupName = Type.String({ minLength: 1, maxLength: 150 });
const Email = Type.Union([Type.Literal(""), Type.String({ format: "email", maxLength: 254 })]);
const Name = Type.String({ maxLength: 150 });
const Password = Type.String({ minLength: 1, maxLength: 1024 });
const Message = Type.Object({ message: Type.String() });

const UserView = Type.Object({
  id: Type.Integer(),
  username: Type.String(),
  email: Type.String(),
  first_name: Type.String(),
  last_name: Type.String(),
  is_active: Type.Boolean(),
  date_joined: Type.String({ format: "date-time" }),
  last_login: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  groups: Type.Array(Type.String()),
});

const OwnView = Type.Object({
  ...UserView.properties,
  scope: Type.String(),
  permissions: Type.Array(Type.String()),
});

const GroupView = Type.Object({ name: Type.String(), permissions: Type.Array(Type.String()) });
const PermissionList = Type.Array(Type.String({ maxLength: 100 }), { maxItems: 200 });

const Membership = Type.Object(
  { username: Username, group: GroupName },
  { additionalProperties: false },
);

const IdParams = Type.Object({ id: Type.Integer({ minimum: 1, maximum: 2 ** 53 - 1 }) });
const GroupParams = Type.Object({ name: GroupName });

/** The user a token acts for; a client's own token (client credentials) has none: 404. */
function ownUserId(actor: Principal): number {
  if (actor.userId === null)
    throw new DomainError("not_found", "This token acts for an OAuth2 client, not for a user.");
  return actor.userId;
}

const userView = (user: User) => ({
  ...user,
  date_joined: user.date_joined.toISOString(),
  last_login: user.last_login?.toISOString() ?? null,
});

export async function usersRoutes(
  app: FastifyInstance,
  { users, registrations }: { users: UsersService; registrations: RegistrationThrottle },
) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post(
    "/register/",
    {
      config: { public: true, identifiesCaller: true },
      schema: {
        tags: ["users"],
        summary: "Register a user; it belongs to no group until an Admin adds it to one",
        body: Type.Object(
          {
            username: Username,
            password: Password,
            email: Type.Optional(Email),
            first_name: Type.Optional(Name),
            last_name: Type.Optional(Name),
          },
          { additionalProperties: false },
        ),
        response: { 201: Message, 429: Type.Object({ detail: Type.String() }) },
      },
    },
    async (request, reply) => {
      // An Admin creating accounts (the console does it here) is not a stranger to limit.
      const wait = request.actor?.permissions.has("user.add")
        ? 0
        : await registrations.take(request.ip);
      if (wait > 0)
        return reply
          .code(429)
          .header("retry-after", String(wait))
          .send({ detail: "Too many registrations from this address; try again later." });
      await users.createUser(request.body);
      return reply.code(201).send({ message: "User created successfully" });
    },
  );

  r.get(
    "/users/",
    {
      config: { permission: "user.view" },
      schema: {
        tags: ["users"],
        summary: "List users (Admin)",
        response: { 200: Type.Array(UserView) },
      },
    },
    async () => (await users.listUsers()).map(userView),
  );

  r.get(
    "/users/me/",
    {
      schema: {
        tags: ["users"],
        summary:
          "The signed-in user, with what this token may do: its scope and its permission codes",
        description:
          "Any valid token with a user may read its own account, so a client can show what its " +
          "user may do without trying each action. A token of an OAuth2 client's own (client " +
          "credentials) has no user: `404`.",
        response: { 200: OwnView, 404: Type.Object({ detail: Type.String() }) },
      },
    },
    async (request) => {
      const actor = actorOf(request);
      return {
        ...userView(await users.getUser(ownUserId(actor))),
        scope: actor.scopes.join(" "),
        permissions: [...actor.permissions].sort(),
      };
    },
  );

  r.post(
    "/users/me/password/",
    {
      schema: {
        tags: ["users"],
        summary: "Change your own password, proving the old one; your other sessions end",
        description:
          "Any user may, with a token holding the `write` scope. Every other session of the " +
          "user ends (their tokens are revoked and live sockets closed); this token and those " +
          "renewed from it stay good. A wrong old password counts as a failed sign-in: too many " +
          "are `429`, as at `/o/token/`. A client's own token (client credentials) has no user: " +
          "`404`.",
        body: Type.Object(
          { old_password: Password, new_password: Password },
          { additionalProperties: false },
        ),
        response: {
          200: Message,
          403: Type.Object({ detail: Type.String() }, { description: "The token lacks `write`" }),
          404: Type.Object({ detail: Type.String() }),
          429: Type.Object({ detail: Type.String() }),
        },
      },
    },
    async (request, reply) => {
      const actor = actorOf(request);
      const userId = ownUserId(actor);
      if (!actor.scopes.includes("write")) throw forbidden();
      const outcome = await users.changeOwnPassword({
        userId,
        tokenId: actor.tokenId,
        address: request.ip,
        oldPassword: request.body.old_password,
        newPassword: request.body.new_password,
      });
      if (!outcome.changed)
        return reply
          .code(429)
          .header("retry-after", String(outcome.waitSeconds))
          .send({ detail: "Too many failed logins; try again later." });
      return { message: "Password changed. Your other sessions have ended." };
    },
  );

  r.get(
    "/users/:id/",
    {
      config: { permission: "user.view" },
      preValidation: rowIdOrNotFound,
      schema: {
        tags: ["users"],
        summary: "One user (Admin)",
        params: IdParams,
        response: { 200: UserView },
      },
    },
    async (request) => userView(await users.getUser(request.params.id)),
  );

  r.patch(
    "/users/:id/",
    {
      config: { permission: "user.change" },
      preValidation: rowIdOrNotFound,
      schema: {
        tags: ["users"],
        summary: "Change a user's details, password or active flag (Admin)",
        params: IdParams,
        body: Type.Object(
          {
            email: Type.Optional(Email),
            first_name: Type.Optional(Name),
            last_name: Type.Optional(Name),
            is_active: Type.Optional(Type.Boolean()),
            password: Type.Optional(Password),
          },
          { additionalProperties: false },
        ),
        response: { 200: UserView },
      },
    },
    async (request) => userView(await users.updateUser(request.params.id, request.body)),
  );

  r.delete(
    "/users/:id/",
    {
      config: { permission: "user.delete" },
      preValidation: rowIdOrNotFound,
      schema: {
        tags: ["users"],
        summary: "Delete a user and its tokens (Admin)",
        params: IdParams,
      },
    },
    async (request, reply) => {
      await users.deleteUser(request.params.id);
      return reply.code(204).send();
    },
  );

  r.get(
    "/groups/",
    {
      config: { permission: "group.view" },
      schema: {
        tags: ["users"],
        summary: "List groups with their permissions (Admin)",
        response: { 200: Type.Array(GroupView) },
      },
    },
    () => users.listGroups(),
  );

  r.post(
    "/groups/",
    {
      config: { permission: "group.add" },
      schema: {
        tags: ["users"],
        summary: "Create a group (Admin)",
        body: Type.Object(
          { name: GroupName, permissions: Type.Optional(PermissionList) },
          { additionalProperties: false },
        ),
        response: { 201: GroupView },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await users.createGroup(request.body.name, request.body.permissions)),
  );

  r.get(
    "/groups/:name/",
    {
      config: { permission: "group.view" },
      schema: {
        tags: ["users"],
        summary: "One group (Admin)",
        params: GroupParams,
        response: { 200: GroupView },
      },
    },
    (request) => users.getGroup(request.params.name),
  );

  r.delete(
    "/groups/:name/",
    {
      config: { permission: "group.delete" },
      schema: {
        tags: ["users"],
        summary: "Delete a group (Admin; not Admin itself)",
        params: GroupParams,
      },
    },
    async (request, reply) => {
      await users.deleteGroup(request.params.name);
      return reply.code(204).send();
    },
  );

  r.put(
    "/groups/:name/permissions/",
    {
      config: { permission: "group.change" },
      schema: {
        tags: ["users"],
        summary: "Replace a group's permissions (Admin)",
        params: GroupParams,
        body: Type.Object({ permissions: PermissionList }, { additionalProperties: false }),
        response: { 200: GroupView },
      },
    },
    (request) => users.setGroupPermissions(request.params.name, request.body.permissions),
  );

  r.get(
    "/permissions/",
    {
      config: { permission: "group.view" },
      schema: {
        tags: ["users"],
        summary: "Every permission code (Admin)",
        response: {
          200: Type.Array(Type.Object({ code: Type.String(), description: Type.String() })),
        },
      },
    },
    () => users.listPermissions(),
  );

  r.post(
    "/add-user-to-group/",
    {
      config: { permission: "group.change" },
      schema: {
        tags: ["users"],
        summary: "Add a user to a group (Admin)",
        body: Membership,
        response: { 200: Message },
      },
    },
    async (request) => {
      const { username, group } = request.body;
      await users.changeMembership("add", username, group);
      return { message: `User ${username} added to group ${group}` };
    },
  );

  r.post(
    "/remove-user-from-group/",
    {
      config: { permission: "group.change" },
      schema: {
        tags: ["users"],
        summary: "Remove a user from a group (Admin)",
        body: Membership,
        response: { 200: Message },
      },
    },
    async (request) => {
      const { username, group } = request.body;
      await users.changeMembership("remove", username, group);
      return { message: `User ${username} removed from group ${group}` };
    },
  );
}
