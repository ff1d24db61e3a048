"""The push gate: registry webhooks into a durable inbox, a worker that decides each pushed
digest at the ``push`` entry point, verdicts per (repository, digest) and their actions.

- ``events``: the ``RegistryEvent`` model every parser produces, and what an envelope held;
- ``distribution`` / ``harbor``: parsers of each registry's notification formats;
- ``own``: how Sealgate recognises its own signature and referrer pushes;
- ``access``: the receivers' shared-secret and address checks;
- ``inbox``: storing envelopes (insert-or-ignore) and claiming events with a lease;
- ``worker``: the loop that claims, processes, retries with back-off and gives up;
- ``process``: what one event does (decide, store a verdict, mark deleted, store a scan);
- ``verdicts``: the adapter to the decision pipeline and the verdict queries;
- ``actions``: the at-most-once actions on a verdict (gate attestation, outbound webhook);
- ``harbor_api``: fetching a full scan report from Harbor's API.
"""
