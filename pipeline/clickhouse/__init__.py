"""ClickHouse side: client profiles (`clients`), numbered migrations (`migrations`, `cluster`), the
campaign registry loader (`campaigns`), reconciliation (`reconcile`) and the `migrate`/`reconcile`
sub-commands (`cli`). Schema files live in `schemas/clickhouse/`."""
