"""Running Linli as many processes on many nodes that share one Redis and one database.

Every process registers itself (`registry`), owns the media of the live sessions it accepted
the first publish of (`media_owners`), forwards requests that belong to another process
(`forward`), hears the events other processes must see (`bus`), and runs the sweepers that must
run once per cluster only while it holds their lease (`lease`). The package takes Redis and its
settings as constructor arguments; the app wires it in (server/cluster_component.py).
docs/CLUSTER.md explains how; docs/ARCHITECTURE.md places the package among the others.
"""
