"""Root-cause analysis: rank the services (and pods, nodes) most likely to have caused an
incident, each with its evidence; the same ranking online (incidents) and offline
(`keiko rca` on a case directory)."""
