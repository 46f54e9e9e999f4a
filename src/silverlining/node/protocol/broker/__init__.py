"""The broker (OSB v2 under ``/v2/``) and federation (``/federation/``) APIs of a node."""

from silverlining.node.protocol.broker.federation import FederationApp
from silverlining.node.protocol.broker.osb import BrokerApp

__all__ = ["BrokerApp", "FederationApp"]
