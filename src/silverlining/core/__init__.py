"""Core: the conformance kit that tells a buyer whether an S3 endpoint is faithful.

Core is a pure client of the AWS wire protocols. It never imports the provider node's code
(``silverlining.node``), so it can certify any implementation: ours, MinIO, Ceph RGW, moto or
Amazon S3 itself. See ``docs/core.md``.

Public API: :data:`CORE_VERSION`; :class:`~silverlining.core.registry.Level` and
:func:`~silverlining.core.registry.load_checks` for the battery;
:class:`~silverlining.core.context.Target`, :func:`~silverlining.core.runner.plan` and
:func:`~silverlining.core.runner.execute` to run it; :mod:`silverlining.core.signing` to sign
and verify reports.
"""

#: The version of the check battery (not of the package). The minor part moves when checks
#: are added; the major part when a published check changes meaning or is removed.
CORE_VERSION = "1.0.0"

__all__ = ["CORE_VERSION"]
