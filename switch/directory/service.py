"""The Directory: the asynchronous API the server calls, composed of a store, a cache and
bucket storage handed in by the caller.

It validates every request with `aliases.AliasRules`, turns national IDs into identity
tokens at once, and leaves every decision about stored state to the pure rules, which the
stores apply inside their transactions. It reads no clock (`now_ns` is an argument), opens
no connection and logs no alias value: the raw national ID must never leave this module
except as a token.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Iterable

import msgspec

from switch.directory import claims as claim_rules
from switch.directory import identity, limits
from switch.directory import mapper as mapper_rules
from switch.directory.aliases import AliasRules, issue_random_key, mask_initials
from switch.directory.buckets import (
    COST_HIT,
    COST_HIT_AFTER,
    COST_NONE,
    LIMITED_USER,
    Charge,
)
from switch.directory.cache import cache_key, decode_entry, encode_entry
from switch.directory.config import BucketPolicy, DirectoryConfig, Secret
from switch.directory.ports import AliasCache, BucketStore, DirectoryStore
from switch.directory.types import (
    AliasRecord,
    AliasStatus,
    AliasType,
    ClaimAction,
    ClaimType,
    ClaimView,
    DirectoryResult,
    ImportSummary,
    MapperLinkRequest,
    MapperResolution,
    Notice,
    OpenClaim,
    RegisterAlias,
    RegisteredAlias,
    Rejection,
    ResolvedAlias,
    ResolveRequest,
    UpdateAlias,
)

R = DirectoryResult
log = logging.getLogger("ponte.directory")

NS_PER_MS = 1_000_000
_ALIAS_TYPES = {int(member): member for member in AliasType}
_CLAIM_TYPES = {int(member): member for member in ClaimType}
# Participant ids already validated, with their bucket policy: the resolve path then skips
# the pattern match. Bounded; past the bound ids are validated every time.
_PARTICIPANTS_REMEMBERED_MAX = 10_000
_RANDOM_KEY_ATTEMPTS_MAX = 3
_CAS_ATTEMPTS_MAX = 3
_replace = msgspec.structs.replace
# The request field a store's refusal of a registration is about.
_REGISTRATION_FIELDS = {R.OWNER_CAP_REACHED: "owner_national_id",
                        R.ACCOUNT_CAP_REACHED: "account_ref"}
# Registration answers that depend on aliases the caller does not hold (someone holds this
# one; the owner's aliases elsewhere fill its cap): each costs what a resolve hit costs.
_REGISTRATION_REVEALS = frozenset({R.ALIAS_TAKEN, R.OWNER_CAP_REACHED})
# End-user names of the buckets directory writes are charged to. Not printable, so no
# payer_user_id (printable by its grammar) can name the same bucket. A registration is
# charged to its owner (the end user the participant acts for); a deletion to one bucket
# per participant.
_OWNER_USER_PREFIX = "\x1eowner\x1e"
_DELETIONS_USER = "\x1edeletions\x1e"


class Directory:
    def __init__(
        self,
        *,
        store: DirectoryStore,
        cache: AliasCache,
        buckets: BucketStore,
        config: DirectoryConfig,
        secret: Secret,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self.cache = cache
        self.buckets = buckets
        self.config = config
        self.rules = AliasRules(config)
        self._secret = secret
        self._bucket_secret = identity.bucket_secret(secret)
        self._random_bytes = random_bytes
        self._participants: dict[str, BucketPolicy] = {}
        # Categories set by the operators at run time (maker-checker, switch/admin); they
        # override `config.participant_categories`. Bounded like `_participants`.
        self._categories: dict[str, str] = {}
        # In-process backends are called without an await on the resolve path, and their
        # bucket keys need no hashing (they never leave this process).
        self._local_cache = None if cache.shared else cache
        self._local_buckets = None if buckets.shared else buckets

    # --- helpers ------------------------------------------------------------------------

    def _lookup_key(self, alias_type: int, alias_value: str) -> tuple[AliasType, str] | Rejection:
        """(type, stored key) for an alias as a payer or participant writes it."""
        member = _ALIAS_TYPES.get(alias_type)
        if member is None:
            return Rejection(result=R.FIELD_TYPE_UNKNOWN, field="alias_type")
        value = self.rules.alias_value(member, alias_value)
        if type(value) is Rejection:
            return value
        if member is AliasType.NATIONAL_ID:
            value = identity.identity_token(self._secret, value).hex()
        return member, value

    def _token(self, national_id: str, field: str) -> bytes | Rejection:
        normalised = self.rules.national_id(national_id, field)
        if type(normalised) is Rejection:
            return normalised
        return identity.identity_token(self._secret, normalised)

    def participant_policy(self, participant_id: str) -> BucketPolicy | Rejection:
        policy = self._participants.get(participant_id)
        if policy is not None:
            return policy
        checked = self.rules.participant_id(participant_id, "payer_participant_id")
        if type(checked) is Rejection:
            return checked
        policy = self.config.participant_buckets[self.participant_category(participant_id)]
        if len(self._participants) < _PARTICIPANTS_REMEMBERED_MAX:
            self._participants[participant_id] = policy
        return policy

    def participant_category(self, participant_id: str) -> str:
        """The bucket category a participant's lookups are charged under now."""
        config = self.config
        return self._categories.get(participant_id) or config.participant_categories.get(
            participant_id, config.participant_category_default)

    def set_participant_category(self, participant_id: str, category: str) -> None:
        """From the participant's next lookup on, charge it under `category` (no restart).
        ValueError for an unknown category or a malformed participant id."""
        if category not in self.config.participant_buckets:
            raise ValueError(f"no bucket category {category!r}")
        checked = self.rules.participant_id(participant_id, "participant_id")
        if type(checked) is Rejection:
            raise ValueError(f"participant id {participant_id!r}")
        if participant_id not in self._categories and (
                len(self._categories) >= _PARTICIPANTS_REMEMBERED_MAX):
            raise ValueError("too many participant categories set")
        self._categories[participant_id] = category
        self._participants.pop(participant_id, None)

    def _record_for(self, request: RegisterAlias, now_ns: int) -> AliasRecord | Rejection:
        """Validate a registration field by field, in the order of the request."""
        rules = self.rules
        participant_id = rules.participant_id(request.participant_id, "participant_id")
        if type(participant_id) is Rejection:
            return participant_id
        alias_type = rules.alias_type(request.alias_type)
        if type(alias_type) is Rejection:
            return alias_type
        national_id_value = None
        if alias_type is AliasType.RANDOM:
            if request.alias_value:
                return Rejection(result=R.RANDOM_KEY_CHOSEN_BY_CLIENT, field="alias_value")
            alias_key = issue_random_key(self._random_bytes(16))
        else:
            alias_key = rules.alias_value(alias_type, request.alias_value)
            if type(alias_key) is Rejection:
                return alias_key
            if alias_type is AliasType.NATIONAL_ID:
                national_id_value = alias_key
        account_ref = rules.account_ref(request.account_ref, "account_ref")
        if type(account_ref) is Rejection:
            return account_ref
        owner_kind = rules.owner_kind(request.owner_kind)
        if type(owner_kind) is Rejection:
            return owner_kind
        owner_token = self._token(request.owner_national_id, "owner_national_id")
        if type(owner_token) is Rejection:
            return owner_token
        initials = rules.display_initials(request.display_name)
        if type(initials) is Rejection:
            return initials
        if national_id_value is not None:
            alias_token = identity.identity_token(self._secret, national_id_value)
            if alias_token != owner_token:
                return Rejection(result=R.NATIONAL_ID_NOT_OWNERS, field="alias_value")
            alias_key = alias_token.hex()
        return AliasRecord(
            alias_type=alias_type, alias_key=alias_key, participant_id=participant_id,
            account_ref=account_ref, owner_token=owner_token, owner_kind=owner_kind,
            display_initials=initials, status=AliasStatus.ACTIVE, created_ns=now_ns,
            updated_ns=now_ns,
        )

    @staticmethod
    def _registered(record: AliasRecord) -> RegisteredAlias:
        return RegisteredAlias(
            alias_type=record.alias_type,
            alias_value="" if record.alias_type is AliasType.NATIONAL_ID else record.alias_key,
            participant_id=record.participant_id,
            account_ref=record.account_ref,
            display_name_masked=mask_initials(record.display_initials),
            created_ns=record.created_ns,
        )

    # --- aliases ------------------------------------------------------------------------

    async def register(self, request: RegisterAlias, now_ns: int) -> RegisteredAlias | Rejection:
        """Register one alias. ALIAS_EXISTS (the same registration again) returns the stored
        registration rather than a rejection: retries are safe.

        A registration is a lookup in disguise (ALIAS_TAKEN says the alias exists), so it
        passes the anti-enumeration gate before the store is asked (RATE_LIMITED, nothing
        written) and an answer about others' aliases costs a hit afterwards (see
        docs/directory.md, "Directory writes")."""
        record = self._record_for(request, now_ns)
        if type(record) is Rejection:
            log.debug("directory.register result=%s field=%s", record.result.name,
                      record.field)
            return record
        (gate,) = await self._charge_registrations([record], COST_NONE, now_ns)
        if not gate.admitted:
            return _limited(gate, "owner_national_id")
        for _ in range(_RANDOM_KEY_ATTEMPTS_MAX):
            (result,) = await self.store.insert_aliases([record], self.config)
            # A fresh RANDOM key that collides (2^-122 per pair) just draws again.
            if not (result is R.ALIAS_TAKEN and record.alias_type is AliasType.RANDOM):
                break
            record = _replace(record, alias_key=issue_random_key(self._random_bytes(16)))
        log.debug("directory.register result=%s alias_type=%s participant_id=%s",
                  result.name, record.alias_type.name, record.participant_id)
        if result in _REGISTRATION_REVEALS:
            await self._charge_registrations([record], COST_HIT_AFTER, now_ns)
        if result is R.OK:
            return self._registered(record)
        if result is R.ALIAS_EXISTS:
            stored = await self.store.get_alias(record.alias_type, record.alias_key)
            return self._registered(stored if stored is not None else record)
        return Rejection(result=result, field=_REGISTRATION_FIELDS.get(result, "alias_value"))

    async def update(self, request: UpdateAlias, now_ns: int) -> RegisteredAlias | Rejection:
        """The holding participant points an alias at another account of the same owner
        and/or changes the display name."""
        participant_id = self.rules.participant_id(request.participant_id, "participant_id")
        if type(participant_id) is Rejection:
            return participant_id
        key = self._lookup_key(request.alias_type, request.alias_value)
        if type(key) is Rejection:
            return key
        account_ref = None
        if request.account_ref:
            account_ref = self.rules.account_ref(request.account_ref, "account_ref")
            if type(account_ref) is Rejection:
                return account_ref
        initials = None
        if request.display_name:
            initials = self.rules.display_initials(request.display_name)
            if type(initials) is Rejection:
                return initials
        alias_type, alias_key = key
        for _ in range(_CAS_ATTEMPTS_MAX):
            current = await self.store.get_alias(alias_type, alias_key)
            if current is None or current.participant_id != participant_id:
                # Whoever else may hold it: not the caller's to know.
                return Rejection(result=R.ALIAS_NOT_FOUND, field="alias_value")
            new = _replace(
                current,
                account_ref=account_ref or current.account_ref,
                display_initials=initials or current.display_initials,
                updated_ns=now_ns,
            )
            result = await self.store.update_alias(new, current, self.config)
            if result is R.OK:
                await self.cache.invalidate(cache_key(alias_type, alias_key))
                return self._registered(new)
            if result is not R.ALIAS_CHANGED:  # ALIAS_CHANGED: lost a race, read again
                field = "account_ref" if result is R.ACCOUNT_CAP_REACHED else "alias_value"
                return Rejection(result=result, field=field)
        return Rejection(result=R.ALIAS_CHANGED, field="alias_value")

    async def delete(
        self, alias_type: int, alias_value: str, participant_id: str, now_ns: int
    ) -> Rejection | None:
        """The holder removes an alias. Any other caller gets ALIAS_NOT_FOUND whether or not
        someone else holds it, charged like a resolve hit (RATE_LIMITED once the buckets are
        empty); the holder's own deletions are never charged."""
        checked = self.rules.participant_id(participant_id, "participant_id")
        if type(checked) is Rejection:
            return checked
        key = self._lookup_key(alias_type, alias_value)
        if type(key) is Rejection:
            return key
        result = await self.store.delete_alias(key[0], key[1], participant_id)
        log.debug("directory.delete result=%s participant_id=%s", result.name, participant_id)
        if result is R.OK:
            await self.cache.invalidate(cache_key(key[0], key[1]))
            return None
        if result is R.ALIAS_NOT_FOUND:
            policy = self.participant_policy(participant_id)
            if type(policy) is Rejection:
                return policy
            (charge,) = await self.buckets.charge_many(
                [(self._user_key(participant_id, _DELETIONS_USER), participant_id, policy,
                  COST_HIT)], self.config.user_bucket, now_ns // NS_PER_MS)
            if not charge.admitted:
                return _limited(charge, "participant_id")
        return Rejection(result=result, field="alias_value")

    # --- resolve ------------------------------------------------------------------------

    def _resolve_checks(
        self, alias_type: int, alias_value: str, payer_participant_id: str, payer_user_id: str
    ) -> tuple[AliasType, str, BucketPolicy, bytes] | Rejection:
        key = self._lookup_key(alias_type, alias_value)
        if type(key) is Rejection:
            return key
        policy = self.participant_policy(payer_participant_id)
        if type(policy) is Rejection:
            return policy
        user = self.rules.payer_user_id(payer_user_id)
        if type(user) is Rejection:
            return user
        return key[0], key[1], policy, self._user_key(payer_participant_id, user)

    def national_id_token(self, national_id: str) -> str | None:
        """The identity token (hex) the switch journals and forwards in place of a
        NATIONAL_ID alias a participant sent (the raw ID is never written or forwarded);
        None if it is not a well-formed national ID. Pure: no store, no bucket."""
        key = self._lookup_key(AliasType.NATIONAL_ID, national_id)
        return None if type(key) is Rejection else key[1]

    def _user_key(self, payer_participant_id: str, payer_user_id: str) -> bytes | str:
        if self._local_buckets is not None:
            return f"{payer_participant_id}\x1f{payer_user_id}"
        return identity.user_bucket_key(self._bucket_secret, payer_participant_id,
                                        payer_user_id)

    async def _charge_registrations(self, records: list[AliasRecord], cost: int,
                                    now_ns: int) -> list[Charge]:
        """Charge registrations (validated records) to their owner's and their participant's
        buckets, in order."""
        items = []
        for record in records:
            policy = self.participant_policy(record.participant_id)
            assert type(policy) is BucketPolicy  # the record's participant id is valid
            user = _OWNER_USER_PREFIX + record.owner_token.hex()
            items.append((self._user_key(record.participant_id, user), record.participant_id,
                          policy, cost))
        return await self.buckets.charge_many(items, self.config.user_bucket,
                                              now_ns // NS_PER_MS)

    @staticmethod
    def _answer(alias_type: AliasType, packed: bytes | None, charge: Charge
                ) -> ResolvedAlias | Rejection:
        if not charge.admitted:
            return _limited(charge, "payer_user_id", "payer_participant_id")
        if packed is None:
            return Rejection(result=R.ALIAS_NOT_FOUND, field="alias_value")
        return decode_entry(alias_type, packed)

    async def resolve(
        self, alias_type: int, alias_value: str, payer_participant_id: str, payer_user_id: str,
        now_ns: int,
    ) -> ResolvedAlias | Rejection:
        """Find the account behind an alias for a payer, charging both buckets. A malformed
        alias costs nothing (it cannot exist, so answering it tells nothing)."""
        checked = self._resolve_checks(alias_type, alias_value, payer_participant_id,
                                       payer_user_id)
        if type(checked) is Rejection:
            return checked
        member, alias_key, policy, user_key = checked
        key = cache_key(member, alias_key)
        local_cache = self._local_cache
        packed = (local_cache.get_now(key) if local_cache is not None
                  else await self.cache.get(key))
        if packed is None:
            token = self.cache.fill_token()
            record = await self.store.get_alias(member, alias_key)
            if record is not None and record.status is AliasStatus.ACTIVE:
                packed = encode_entry(record)
                await self.cache.fill(key, packed, token)
        local_buckets = self._local_buckets
        if local_buckets is not None:
            charge = local_buckets.charge_now(user_key, payer_participant_id,
                                              self.config.user_bucket, policy,
                                              packed is not None, now_ns // NS_PER_MS)
        else:
            charge = await self.buckets.charge(user_key, payer_participant_id,
                                               self.config.user_bucket, policy,
                                               packed is not None, now_ns // NS_PER_MS)
        return self._answer(member, packed, charge)

    async def resolve_many(
        self, requests: list[ResolveRequest], now_ns: int
    ) -> list[ResolvedAlias | Rejection]:
        """Resolve a batch with one cache round trip and one bucket round trip (pipelined
        when the backends are Redis). Same answers as calling `resolve` for each in order;
        a `prepaid` request is admitted the same way and costs nothing."""
        assert len(requests) <= limits.RESOLVE_BATCH_MAX
        answers: list[ResolvedAlias | Rejection | None] = [None] * len(requests)
        pending = []  # (index, alias_type, alias_key, policy, user_key, participant_id)
        for index, request in enumerate(requests):
            checked = self._resolve_checks(request.alias_type, request.alias_value,
                                           request.payer_participant_id, request.payer_user_id)
            if type(checked) is Rejection:
                answers[index] = checked
            else:
                pending.append((index, *checked, request.payer_participant_id))
        if not pending:
            return answers
        keys = [cache_key(item[1], item[2]) for item in pending]
        token = self.cache.fill_token()
        packed_list = await self.cache.get_many(keys)
        missing = [(item[1], item[2]) for item, packed in zip(pending, packed_list)
                   if packed is None]
        if missing:
            found = await self.store.get_aliases(missing)
            for position, packed in enumerate(packed_list):
                if packed is not None:
                    continue
                item = pending[position]
                record = found.get((int(item[1]), item[2]))
                if record is not None and record.status is AliasStatus.ACTIVE:
                    packed_list[position] = encode_entry(record)
                    await self.cache.fill(keys[position], packed_list[position], token)
        charges = await self.buckets.charge_many(
            [(item[4], item[5], item[3],
              COST_NONE if requests[item[0]].prepaid else packed is not None)
             for item, packed in zip(pending, packed_list)],
            self.config.user_bucket, now_ns // NS_PER_MS,
        )
        for item, packed, charge in zip(pending, packed_list, charges):
            answers[item[0]] = self._answer(item[1], packed, charge)
        return answers

    async def refund_lookup(
        self, payer_participant_id: str, payer_user_id: str, now_ns: int
    ) -> Rejection | None:
        """A payment that used a lookup completed: give the payer's buckets a token back."""
        policy = self.participant_policy(payer_participant_id)
        if type(policy) is Rejection:
            return policy
        user = self.rules.payer_user_id(payer_user_id)
        if type(user) is Rejection:
            return user
        await self.buckets.refund(self._user_key(payer_participant_id, user),
                                  payer_participant_id, self.config.user_bucket, policy,
                                  now_ns // NS_PER_MS)
        return None

    # --- claims -------------------------------------------------------------------------

    async def open_claim(
        self, request: OpenClaim, now_ns: int
    ) -> tuple[ClaimView | Rejection, list[Notice]]:
        rules = self.rules
        claim_type = _CLAIM_TYPES.get(request.claim_type)
        if claim_type is None:
            return Rejection(result=R.FIELD_TYPE_UNKNOWN, field="claim_type"), []
        key = self._lookup_key(request.alias_type, request.alias_value)
        if type(key) is Rejection:
            return key, []
        checked = (
            rules.participant_id(request.claimer_participant_id, "claimer_participant_id"),
            rules.account_ref(request.claimer_account_ref, "claimer_account_ref"),
            rules.owner_kind(request.claimer_owner_kind, "claimer_owner_kind"),
            self._token(request.claimer_owner_national_id, "claimer_owner_national_id"),
            rules.display_initials(request.claimer_display_name, "claimer_display_name"),
        )
        refused = _first_refusal(checked)
        if refused is not None:
            return refused, []
        participant_id, account_ref, owner_kind, owner_token, initials = checked
        alias = await self.store.get_alias(*key)
        claim, notices = claim_rules.open_claim(
            claim_id=self._random_bytes(16).hex(), claim_type=claim_type, alias=alias,
            claimer_participant_id=participant_id, claimer_account_ref=account_ref,
            claimer_owner_token=owner_token, claimer_owner_kind=owner_kind,
            claimer_display_initials=initials, now_ns=now_ns, config=self.config,
        )
        if type(claim) is Rejection:
            return claim, []
        result = await self.store.insert_claim(claim)
        log.debug("directory.claim.open result=%s claim_type=%s", result.name, claim_type.name)
        if result is not R.OK:
            return Rejection(result=result, field="alias_value"), []
        return claim_rules.view(claim), notices

    async def claim_action(
        self, claim_id: str, action: ClaimAction, participant_id: str, now_ns: int
    ) -> tuple[ClaimView | Rejection, list[Notice]]:
        """ACKNOWLEDGE, CONFIRM, CANCEL or COMPLETE a claim on behalf of `participant_id`."""
        if not isinstance(claim_id, str) or len(claim_id) != 32:
            return Rejection(result=R.FIELD_MALFORMED, field="claim_id"), []
        for _ in range(_CAS_ATTEMPTS_MAX):
            prior = await self.store.get_claim(claim_id)
            if prior is None:
                return Rejection(result=R.CLAIM_NOT_FOUND, field="claim_id"), []
            if participant_id not in (prior.donor_participant_id, prior.claimer_participant_id):
                return Rejection(result=R.CLAIM_NOT_PARTY, field="participant_id"), []
            claim, rejection, notices = claim_rules.step(prior, action, participant_id, now_ns,
                                                         self.config)
            if rejection is None and action is ClaimAction.COMPLETE:
                result = await self.store.complete_claim(claim, prior, now_ns, self.config)
                if result is R.OK:
                    await self.cache.invalidate(cache_key(claim.alias_type, claim.alias_key))
                    return claim_rules.view(claim), notices
                if result is R.ALIAS_CHANGED:
                    cancelled, notices = claim_rules.cancel_alias_changed(prior, now_ns)
                    if await self.store.save_claim(cancelled, prior):
                        return Rejection(result=result, field="claim_id"), notices
                    continue
                if result is R.CLAIM_STATE_INVALID:
                    continue  # the claim changed under us: read it again
                # Over a cap: the claim stays confirmed (the claimer may make room and
                # complete again), but a window that ended on the way is still recorded.
                expired, notices = claim_rules.expire(prior, now_ns, self.config)
                if expired != prior and not await self.store.save_claim(expired, prior):
                    continue
                field = ("claimer_account_ref" if result is R.ACCOUNT_CAP_REACHED
                         else "claimer_owner_national_id")
                return Rejection(result=result, field=field), notices
            if claim != prior and not await self.store.save_claim(claim, prior):
                continue
            if rejection is not None:
                return rejection, notices
            return claim_rules.view(claim), notices
        return Rejection(result=R.CLAIM_STATE_INVALID, field="claim_id"), []

    async def expire_claims(self, now_ns: int) -> list[Notice]:
        """Apply every claim window that ended; the server calls this on a timer."""
        notices: list[Notice] = []
        for prior in await self.store.due_claims(now_ns, limits.CLAIMS_EXPIRED_PER_CALL_MAX):
            claim, claim_notices = claim_rules.expire(prior, now_ns, self.config)
            if claim != prior and await self.store.save_claim(claim, prior):
                notices.extend(claim_notices)
        return notices

    async def list_claims(self, participant_id: str) -> list[ClaimView]:
        found = await self.store.participant_claims(participant_id, limits.CLAIMS_LISTED_MAX)
        return [claim_rules.view(claim) for claim in found]

    # --- G2P mapper ---------------------------------------------------------------------

    async def mapper_link(
        self, request: MapperLinkRequest, now_ns: int
    ) -> tuple[MapperResolution | Rejection, list[Notice]]:
        checked = (
            self._token(request.id, "id"),
            self.rules.participant_id(request.participant_id, "participant_id"),
            self.rules.account_ref(request.account_ref, "account_ref"),
        )
        refused = _first_refusal(checked)
        if refused is not None:
            return refused, []
        id_token, participant_id, account_ref = checked
        linked_ns = request.timestamp_ns or now_ns
        for _ in range(_CAS_ATTEMPTS_MAX):
            current = await self.store.get_mapper_link(id_token)
            link, notices = mapper_rules.link(current, id_token, participant_id, account_ref,
                                              linked_ns, now_ns)
            if type(link) is Rejection:
                return link, []
            if await self.store.put_mapper_link(link, current):
                return mapper_rules.resolution(link), notices
        return Rejection(result=R.MAPPER_LINK_STALE, field="timestamp_ns"), []

    async def mapper_resolve(self, id_value: str) -> MapperResolution | Rejection:
        id_token = self._token(id_value, "id")
        if type(id_token) is Rejection:
            return id_token
        return mapper_rules.resolution(await self.store.get_mapper_link(id_token))

    async def mapper_resolve_tokens(self, id_tokens: list[bytes]
                                    ) -> list[MapperResolution | Rejection]:
        """`mapper_resolve` for identity tokens a caller already holds (G2P batch rows
        keep only the token), answered in order with one store read."""
        links = await self.store.get_mapper_links(list(set(id_tokens)))
        return [mapper_rules.resolution(links.get(token)) for token in id_tokens]

    def identity_token(self, national_id: str, field: str = "id") -> bytes | Rejection:
        """The identity token of a national ID, or the Rejection naming `field` (pure)."""
        return self._token(national_id, field)

    async def mapper_unlink(self, id_value: str, participant_id: str) -> Rejection | None:
        id_token = self._token(id_value, "id")
        if type(id_token) is Rejection:
            return id_token
        refused = mapper_rules.unlink(await self.store.get_mapper_link(id_token), participant_id)
        if refused is not None:
            return refused
        if not await self.store.delete_mapper_link(id_token, participant_id):
            return Rejection(result=R.MAPPER_NOT_HOLDER, field="participant_id")
        return None

    # --- bulk import --------------------------------------------------------------------

    async def bulk_import(
        self,
        rows: Iterable[RegisterAlias | Rejection],
        now_ns: int,
        on_rows: Callable[[int], None] | None = None,
        charge_buckets: bool = True,
    ) -> ImportSummary:
        """Register many aliases, IMPORT_BATCH_ROWS_MAX per store transaction. Every row
        gets the same checks as `register`; refused rows are counted and (up to a bound)
        listed by row number, never by value.

        Rows are charged like `register` (each batch admitted on the balances it finds,
        then a hit per row refused for others' aliases), unless `charge_buckets` is False:
        the operator's import (`ponte directory import`), which no participant can reach."""
        summary = ImportSummary()
        batch: list[tuple[int, RegisterAlias | Rejection]] = []
        for row in rows:
            summary.rows += 1
            batch.append((summary.rows, row))
            if len(batch) == limits.IMPORT_BATCH_ROWS_MAX:
                await self._import_batch(batch, now_ns, summary, charge_buckets)
                if on_rows is not None:
                    on_rows(len(batch))
                batch = []
        if batch:
            await self._import_batch(batch, now_ns, summary, charge_buckets)
            if on_rows is not None:
                on_rows(len(batch))
        log.info("directory.import rows=%d registered=%d existing=%d rejected=%d",
                 summary.rows, summary.registered, summary.existing, summary.rejected)
        return summary

    async def _import_batch(self, batch, now_ns: int, summary: ImportSummary,
                            charge_buckets: bool) -> None:
        records, numbers = [], []
        for number, row in batch:
            record = row if type(row) is Rejection else self._record_for(row, now_ns)
            if type(record) is Rejection:
                _reject(summary, number, record)
            else:
                records.append(record)
                numbers.append(number)
        if records and charge_buckets:
            gates = await self._charge_registrations(records, COST_NONE, now_ns)
            admitted = []
            for record, number, gate in zip(records, numbers, gates):
                if gate.admitted:
                    admitted.append((record, number))
                else:
                    _reject(summary, number, _limited(gate, "owner_national_id"))
            records = [record for record, _ in admitted]
            numbers = [number for _, number in admitted]
        if not records:
            return
        results = await self.store.insert_aliases(records, self.config)
        if charge_buckets:
            revealed = [record for record, result in zip(records, results)
                        if result in _REGISTRATION_REVEALS]
            if revealed:
                await self._charge_registrations(revealed, COST_HIT_AFTER, now_ns)
        for number, result in zip(numbers, results):
            if result is R.OK:
                summary.registered += 1
            elif result is R.ALIAS_EXISTS:
                summary.existing += 1
            else:
                field = _REGISTRATION_FIELDS.get(result, "alias_value")
                _reject(summary, number, Rejection(result=result, field=field))


def _first_refusal(checked: tuple) -> Rejection | None:
    """The first refusal among field checks listed in request order (the checks are pure,
    so running them all and answering the first is the same as stopping at it)."""
    for value in checked:
        if type(value) is Rejection:
            return value
    return None


def _limited(charge: Charge, user_field: str,
             participant_field: str = "participant_id") -> Rejection:
    """RATE_LIMITED, naming the request field of the bucket that refused."""
    field = user_field if charge.limited_by == LIMITED_USER else participant_field
    return Rejection(result=R.RATE_LIMITED, field=field, retry_after_ms=charge.retry_after_ms)


def _reject(summary: ImportSummary, number: int, rejection: Rejection) -> None:
    summary.rejected += 1
    if len(summary.rejections) < limits.IMPORT_REJECTIONS_KEPT_MAX:
        summary.rejections.append((number, rejection))

