"""Pure decisions over plain data: the command table, the topology snapshot, eligibility,
geo location and the choice of replica. No IO; imports only config.
"""
