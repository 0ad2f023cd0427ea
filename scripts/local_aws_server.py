"""berth's local AWS: moto's server on loopback, with a translation layer in
front of it for the Smithy RPC v2 CBOR protocol.

The current aws-sdk-cloudwatch speaks RPC v2 CBOR, which moto does not. CloudWatch
also speaks the AWS JSON 1.0 protocol, which moto does, with the same shapes: this
layer decodes a CBOR request into JSON, lets moto answer it, and encodes the answer
back into CBOR, converting timestamps, blobs and floating-point numbers by the
service model (botocore's) so that the SDK reads exactly the types it expects.

Started by `scripts/local-aws start`; it binds a free loopback port itself and writes
it to `<state-dir>/port` once it listens.
"""

import argparse
import fnmatch
import base64
import datetime
import io
import json
import os
import re
import signal
import sys
import threading

import botocore.session
import cbor2
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

RPC_V2_PATH = re.compile(r"^/service/(?P<service>[^/]+)/operation/(?P<operation>[^/]+)$")

# Smithy service names that speak RPC v2 CBOR, and their botocore names.
CBOR_SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}

_models = {}


def service_model(name):
    if name not in _models:
        _models[name] = botocore.session.get_session().get_service_model(name)
    return _models[name]


def to_json(value, shape):
    """A decoded CBOR value as the JSON protocol writes it."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {
            k: to_json(v, shape.members.get(k))
            for k, v in value.items()
            if k in shape.members
        }
    if kind == "list":
        return [to_json(v, shape.member) for v in value]
    if kind == "map":
        return {k: to_json(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        return value
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    return value


def to_cbor(value, shape):
    """A JSON protocol value as RPC v2 CBOR carries it."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {
            k: to_cbor(v, shape.members.get(k))
            for k, v in value.items()
            if k in shape.members
        }
    if kind == "list":
        return [to_cbor(v, shape.member) for v in value]
    if kind == "map":
        return {k: to_cbor(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, (int, float)):
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        if isinstance(value, str):
            return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value
    if kind == "blob":
        return base64.b64decode(value) if isinstance(value, str) else value
    if kind in ("double", "float") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class RpcV2CborTranslator:
    """WSGI middleware: RPC v2 CBOR in front, AWS JSON 1.0 to the app behind."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        match = RPC_V2_PATH.match(environ.get("PATH_INFO", ""))
        if not match or match["service"] not in CBOR_SERVICES:
            return self.app(environ, start_response)
        model = service_model(CBOR_SERVICES[match["service"]])
        try:
            operation = model.operation_model(match["operation"])
        except Exception:  # botocore raises OperationNotFoundError
            return self._error(start_response, 404, "UnknownOperationException", match["operation"])

        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        request = cbor2.loads(raw) if raw else {}
        body = json.dumps(to_json(request, operation.input_shape) or {}).encode()

        inner = dict(environ)
        inner.update(
            {
                "PATH_INFO": "/",
                "REQUEST_METHOD": "POST",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"{match['service']}.{match['operation']}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"] = status
            captured["headers"] = headers
            return lambda _data: None

        chunks = self.app(inner, capture)
        try:
            answer = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()

        status = captured["status"]
        data = json.loads(answer) if answer.strip() else {}
        if int(status.split()[0]) < 300:
            out = to_cbor(data, operation.output_shape) if operation.output_shape else {}
        else:
            out = {"__type": data.get("__type", "InternalFailure"), "message": data.get("message", "")}
        encoded = cbor2.dumps(out or {}, datetime_as_timestamp=True)
        headers = [
            (k, v)
            for k, v in captured["headers"]
            if k.lower() not in ("content-type", "content-length", "x-amz-crc32")
        ]
        headers += [
            ("Content-Type", "application/cbor"),
            ("Content-Length", str(len(encoded))),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]
        start_response(status, headers)
        return [encoded]

    @staticmethod
    def _error(start_response, code, kind, message):
        encoded = cbor2.dumps({"__type": kind, "message": message})
        start_response(
            f"{code} Error",
            [
                ("Content-Type", "application/cbor"),
                ("Content-Length", str(len(encoded))),
                ("smithy-protocol", "rpc-v2-cbor"),
            ],
        )
        return [encoded]


def ecs_as_aws_answers():
    """Where moto's ECS answers otherwise than AWS's, as AWS does, and the
    Fargate Spot shortfalls the local run plays. RunTask on
    an EC2 cluster with no container instance: AWS answers
    InvalidParameterException ("No Container Instances were found in your
    cluster."), which berth reads as "no room"; moto raises a bare error (a
    500). ListTasks lists RUNNING tasks unless asked for STOPPED ones."""
    from moto.ecs.exceptions import InvalidParameterException
    from moto.ecs.models import EC2ContainerServiceBackend

    run_task = EC2ContainerServiceBackend.run_task

    def patched(self, *args, **kwargs):
        try:
            return run_task(self, *args, **kwargs)
        except InvalidParameterException:
            raise
        except Exception as e:
            if str(e).startswith("No instances found in cluster"):
                raise InvalidParameterException(
                    "No Container Instances were found in your cluster."
                ) from e
            raise

    EC2ContainerServiceBackend.run_task = patched

    # Fargate Spot short of capacity, on demand (moto always has room): a
    # task whose job sets PLAY_SPOT_SHORTFALL=N finds none on FARGATE_SPOT
    # from its launch N on (1 if N is not a number). AWS answers with a
    # failure and no task; berth reads no task as no room as well.
    placed = EC2ContainerServiceBackend.run_task

    def short_of_spot(self, *args, **kwargs):
        strategy = kwargs.get("capacity_provider_strategy")
        if strategy is None and len(args) >= 11:
            strategy = args[10]
        overrides = kwargs.get("overrides") if "overrides" in kwargs else (
            args[3] if len(args) > 3 else None
        )
        spot = any(
            (item or {}).get("capacityProvider") == "FARGATE_SPOT"
            for item in strategy or []
        )
        env = {}
        for container in (overrides or {}).get("containerOverrides") or []:
            for pair in container.get("environment") or []:
                env[pair.get("name")] = pair.get("value")
        if spot and "PLAY_SPOT_SHORTFALL" in env:
            try:
                from_launch = int(env["PLAY_SPOT_SHORTFALL"])
            except ValueError:
                from_launch = 1
            try:
                launch = int(env.get("BERTH_LAUNCH", "1"))
            except ValueError:
                launch = 1
            if launch >= from_launch:
                return []
        return placed(self, *args, **kwargs)

    EC2ContainerServiceBackend.run_task = short_of_spot

    # ListTasks without desiredStatus lists RUNNING tasks only on AWS
    # (stopped ones are listed when asked for); moto lists every task.
    list_tasks = EC2ContainerServiceBackend.list_tasks

    def listed(
        self,
        cluster_str=None,
        container_instance=None,
        family=None,
        started_by=None,
        service_name=None,
        desiredStatus=None,
    ):
        return list_tasks(
            self,
            cluster_str,
            container_instance,
            family,
            started_by,
            service_name,
            desiredStatus or "RUNNING",
        )

    EC2ContainerServiceBackend.list_tasks = listed

    # A container instance registers what its EC2 instance type has, as the
    # ECS agent does: all its CPU (1024 units a vCPU), its memory less what
    # the agent keeps (an m4.large's 8 GiB registers 7,985 MiB), its GPUs by
    # id, and the attribute `ecs.cpu-architecture`. moto registers 4096 CPU
    # units and 7482 MiB whatever the type, and no architecture.
    from moto.ec2.models.instance_types import INSTANCE_TYPES
    from moto.ecs.models import ContainerInstance

    registered = ContainerInstance.__init__

    def as_its_type(self, ec2_instance_id, account_id, region_name, cluster_name, backend):
        registered(self, ec2_instance_id, account_id, region_name, cluster_name, backend)
        # How the instance is bought, as the launch templates' user data
        # tells the agent from the instance metadata: the local group, as
        # the template's by default, buys every instance at Spot.
        self.attributes["berth.market"] = "spot"
        kind = INSTANCE_TYPES.get(self.attributes.get("ecs.instance-type"))
        if kind is None:
            return
        cpu = kind["VCpuInfo"]["DefaultVCpus"] * 1024
        memory = kind["MemoryInfo"]["SizeInMiB"] * 7985 // 8192
        gpus = sum(g.get("Count", 0) for g in (kind.get("GpuInfo") or {}).get("Gpus", []))
        for resources in (self.registered_resources, self.remaining_resources):
            for r in resources:
                if r["name"] == "CPU":
                    r["integerValue"] = cpu
                elif r["name"] == "MEMORY":
                    r["integerValue"] = memory
            if gpus:
                resources.append(
                    {
                        "doubleValue": 0.0,
                        "integerValue": 0,
                        "longValue": 0,
                        "name": "GPU",
                        "stringSetValue": [f"GPU-{ec2_instance_id}-{n}" for n in range(gpus)],
                        "type": "STRINGSET",
                    }
                )
        arch = (kind.get("ProcessorInfo") or {}).get("SupportedArchitectures") or ["x86_64"]
        self.attributes["ecs.cpu-architecture"] = "arm64" if "arm64" in arch else "x86_64"

    ContainerInstance.__init__ = as_its_type

    # An Auto Scaling group with a mixed instances policy launches the type
    # of its first override, as a group whose overrides list the types in
    # order of price would on AWS; moto launches its launch template's type,
    # and a template that names none launches none.
    from moto.autoscaling.models import FakeAutoScalingGroup

    template_type = FakeAutoScalingGroup.instance_type

    def first_override(self):
        launch = (self.mixed_instances_policy or {}).get("LaunchTemplate") or {}
        overrides = launch.get("Overrides") or []
        if overrides and overrides[0].get("InstanceType"):
            return overrides[0]["InstanceType"]
        return template_type.fget(self)

    FakeAutoScalingGroup.instance_type = property(first_override)

    # RunTask's placement constraints of the kinds berth sets (`memberOf`,
    # `attribute:ecs.cpu-architecture == …`: a task goes only on an instance
    # of its architecture; `attribute:ecs.instance-type !~ g*`: not on a GPU
    # instance). moto ignores placement constraints.
    # And a task that asks for GPUs (a container override's resource
    # requirement, as berth asks) goes only on an instance that has as many
    # (the GPUs other tasks hold are not counted); moto ignores GPUs.
    from moto.ecs.responses import EC2ContainerServiceResponse

    asked = threading.local()
    respond = EC2ContainerServiceResponse.run_task

    def constrained(self):
        asked.constraints = self._get_param("placementConstraints") or []
        overrides = (self._get_param("overrides") or {}).get("containerOverrides") or []
        asked.gpus = sum(
            int(r.get("value") or 0)
            for c in overrides
            for r in c.get("resourceRequirements") or []
            if r.get("type") == "GPU"
        )
        try:
            return respond(self)
        finally:
            asked.constraints = []
            asked.gpus = 0

    EC2ContainerServiceResponse.run_task = constrained
    fits = EC2ContainerServiceBackend._can_be_placed

    def placeable(container_instance, requirements):
        for c in getattr(asked, "constraints", []):
            expression = c.get("expression") or ""
            if c.get("type") != "memberOf":
                continue
            for operator in ("!~", "=="):
                if operator in expression:
                    break
            else:
                continue
            name, value = (part.strip() for part in expression.split(operator, 1))
            if not name.startswith("attribute:"):
                continue
            have = container_instance.attributes.get(name[len("attribute:"):])
            if operator == "==" and have != value:
                return False
            if operator == "!~" and have is not None and fnmatch.fnmatchcase(have, value):
                return False
        gpus = sum(
            len(r.get("stringSetValue") or [])
            for r in container_instance.registered_resources
            if r.get("name") == "GPU"
        )
        if gpus < getattr(asked, "gpus", 0):
            return False
        return fits(container_instance, requirements)

    EC2ContainerServiceBackend._can_be_placed = staticmethod(placeable)


def autoscaling_as_aws_answers():
    """Where moto's Auto Scaling answers otherwise than AWS's:
    TerminateInstanceInAutoScalingGroup with ShouldDecrementDesiredCapacity
    refuses to take the group below its minimum (a ValidationError, in
    AWS's words); moto takes it there."""
    from moto.autoscaling.exceptions import ValidationError
    from moto.autoscaling.models import AutoScalingBackend

    terminate = AutoScalingBackend.terminate_instance

    def refused_below_minimum(self, instance_id, should_decrement):
        if should_decrement:
            for group in self.autoscaling_groups.values():
                ids = [s.instance.id for s in group.instance_states]
                if instance_id in ids and group.desired_capacity <= group.min_size:
                    raise ValidationError(
                        f"Currently, desiredSize equals minSize ({group.min_size}). "
                        "Terminating instance without replacement will violate "
                        "group's min size constraint. Either set "
                        "shouldDecrementDesiredCapacity flag to false or lower "
                        "group's min size."
                    )
        return terminate(self, instance_id, should_decrement)

    AutoScalingBackend.terminate_instance = refused_below_minimum


# The Spot prices the local AWS answers, USD per hour (made up near us-east-1's
# of late, not observed), and how each zone's differs from it. moto answers
# $0.00001 for every type, which would make every instance look free.
LOCAL_SPOT_PRICES = {
    "m5.large": 0.0371,
    "m5a.large": 0.0352,
    "m6i.large": 0.0389,
    "c5.large": 0.0334,
    "c5.xlarge": 0.0668,
    "c6g.large": 0.0281,
    "m6g.large": 0.0309,
    "r5.large": 0.0472,
    "g4dn.xlarge": 0.2151,
}
ZONE_SPREAD = [1.0, 1.06, 0.94, 1.12, 0.97, 1.03]


def ec2_as_aws_answers():
    """DescribeSpotPriceHistory as AWS answers it when asked for the price in
    effect now: one price per type and zone, stamped now, for the types with a
    price in LOCAL_SPOT_PRICES (AWS leaves out what it has no price for)."""
    from moto.core.responses import ActionResult
    from moto.ec2.responses.spot_instances import SpotInstances

    def describe_spot_price_history(self):
        types = self._get_param("InstanceTypes", [])
        filters = self._filters_from_querystring()
        offerings = self.ec2_backend.describe_spot_price_history(types, filters)
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        zones = sorted({o["Location"] for o in offerings})
        history = [
            {
                "InstanceType": o["InstanceType"],
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": "%.6f"
                % (
                    LOCAL_SPOT_PRICES[o["InstanceType"]]
                    * ZONE_SPREAD[zones.index(o["Location"]) % len(ZONE_SPREAD)]
                ),
                "AvailabilityZone": o["Location"],
                "Timestamp": now,
            }
            for o in offerings
            if o["InstanceType"] in LOCAL_SPOT_PRICES
        ]
        return ActionResult({"SpotPriceHistory": history})

    SpotInstances.describe_spot_price_history = describe_spot_price_history


def write(path, value):
    with open(path + ".tmp", "w") as f:
        f.write(str(value))
    os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit(f"refusing to listen on {args.host}: the local AWS is for loopback only")

    # An ECS task stays RUNNING until it is stopped, as a container that has
    # not exited would; moto's default moves it on by one state per read.
    state_manager.set_transition(
        "ecs::task", {"progression": "manual", "times": 10**12}
    )
    ecs_as_aws_answers()
    autoscaling_as_aws_answers()
    ec2_as_aws_answers()
    moto = DomainDispatcherApplication(create_backend_app)
    server = make_server(
        args.host,
        args.port,
        RpcV2CborTranslator(moto),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    write(os.path.join(args.state_dir, "pid"), os.getpid())
    write(os.path.join(args.state_dir, "port"), server.server_port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"local AWS listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
