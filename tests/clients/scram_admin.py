"""SCRAM credentials managed with confluent-kafka's admin client (AlterUserScramCredentials and
DescribeUserScramCredentials), logged in over SASL_SSL as an administrator.

    python3 scram_admin.py BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD set USER MECHANISM PASSWORD
    python3 scram_admin.py BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD delete USER MECHANISM
    python3 scram_admin.py BOOTSTRAP CA_PEM ADMIN_USER ADMIN_PASSWORD describe USER

Prints "ok" (set, delete) or "MECHANISM ITERATIONS" per credential (describe); on an error
prints it and exits 1.
"""

import sys

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)


def main():
    bootstrap, ca, admin_user, admin_password, action, user, *rest = sys.argv[1:]
    admin = AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": "sasl_ssl",
            "ssl.ca.location": ca,
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": admin_user,
            "sasl.password": admin_password,
        }
    )
    try:
        if action == "describe":
            described = admin.describe_user_scram_credentials([user])[user].result(20)
            for info in described.scram_credential_infos:
                print(info.mechanism.name, info.iterations)
            return
        mechanism = ScramMechanism[rest[0].replace("-", "_")]
        if action == "set":
            alteration = UserScramCredentialUpsertion(
                user, ScramCredentialInfo(mechanism, 8192), rest[1].encode()
            )
        else:
            alteration = UserScramCredentialDeletion(user, mechanism)
        admin.alter_user_scram_credentials([alteration])[user].result(20)
        print("ok")
    except Exception as error:  # the client's own error, for the test to match
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
