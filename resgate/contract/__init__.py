"""The contracts every part of ResilienceGate shares: errors, environment variable names, the ledger's
vocabulary and the evidence layout.

This package is a leaf: it imports only the standard library, so the load generator's image, the reference
system (paperbroker), the gate and the assertion Lambdas can all import it without pulling in each other.
"""
