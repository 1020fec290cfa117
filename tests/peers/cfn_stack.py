#!/usr/bin/env python3
"""Unroll a template of deploy/aws/ and create it in a moto server.

Run with `<repo>/.venv/bin/python` (cfn-lint, boto3 and moto come from
requirements.txt):

    cfn_stack.py expand TEMPLATE [--cfn-lint]
    cfn_stack.py create TEMPLATE --port PORT --stack NAME [--param KEY=VALUE ...]
                        [--out FILE]

expand   prints the template as JSON after the AWS::LanguageExtensions
         transform, the Transform line removed. The template uses only
         Fn::ForEach over literal lists, which this unrolls itself as
         CloudFormation does: each fragment key and string with ${Id} gets
         the item, {"Ref": Id} becomes the item, and an Fn::Sub left with
         no variable becomes its text. --cfn-lint: cfn-lint's own transform
         instead (slow: 10 s and more for the 230 slots; it also resolves
         Fn::FindInMap and reorders some arguments), for comparison.
create   unrolls, then creates the stack in the moto server on
         127.0.0.1:PORT with the given parameters (moto has no language
         extensions; it evaluates Conditions, Fn::Select and friends itself
         and creates the IAM, KMS, S3, DynamoDB, EC2 and autoscaling
         resources it models, skipping the others). Prints {"status",
         "reason", "outputs", "resources": [{"logical", "type",
         "physical"}] (made ones only), "roles": {name: {"id", "path",
         "tags", "inline"}}, "profiles": {name: [role names]}, "policies":
         {arn: document}, "policy_roles": {arn: [role names attached]},
         "tables": {name: DescribeTable + "TimeToLive"},
         "launch_templates": {id: latest LaunchTemplateData, UserData
         decoded}, "groups": {name: DescribeAutoScalingGroups entry}}: what
         the stack made, read back through the services' APIs. moto neither
         attaches a role's ManagedPolicyArns nor applies a bucket's Object
         Lock or versioning, nor a table's TimeToLiveSpecification or
         point-in-time recovery: those are left to the template checks.
         --out FILE: the JSON goes there instead (it is ~100 kB for 200
         hosts, more than a pipe holds for a caller that reads only after
         the exit).

On any error: a message on stderr, exit 1.
"""

import argparse
import ast
import base64
import json
import sys
import time

import boto3
from cfnlint.decode import decode
from cfnlint.template import Template
from cfnlint.template.transforms.transform import Transform


def decoded(path):
    template, errors = decode(path)
    if errors or template is None:
        sys.exit("\n".join(str(e) for e in errors) or f"{path}: no template")
    return template


def lint_expand(path):
    cfn = Template(path, decoded(path), ["us-east-1"])
    matches = Transform().transform(cfn)
    if matches:
        sys.exit("\n".join(str(m) for m in matches))
    return json.loads(json.dumps(cfn.template, default=str))


def substitute(node, ident, item):
    """node with loop identifier ident bound to item."""
    var = "${" + ident + "}"
    if isinstance(node, list):
        return [substitute(x, ident, item) for x in node]
    if isinstance(node, str):
        return node.replace(var, item)
    if not isinstance(node, dict):
        return node
    if node == {"Ref": ident}:
        return item
    if list(node) == ["Fn::Sub"]:
        sub = substitute(node["Fn::Sub"], ident, item)
        if isinstance(sub, str) and "${" not in sub:
            return sub
        return {"Fn::Sub": sub}
    return {substitute(k, ident, item): substitute(v, ident, item) for k, v in node.items()}


def unroll(node):
    if isinstance(node, list):
        return [unroll(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if not key.startswith("Fn::ForEach::"):
            out[key] = unroll(value)
            continue
        ident, collection, fragment = value
        if not isinstance(collection, list):
            sys.exit(f"{key}: only literal collections are unrolled here")
        for item in collection:
            for k, v in unroll(substitute(fragment, ident, item)).items():
                if k in out:
                    sys.exit(f"{key}: logical id {k} twice")
                out[k] = v
    return out


def expand(path, with_cfn_lint=False):
    out = lint_expand(path) if with_cfn_lint else unroll(decoded(path))
    out.pop("Transform", None)
    return out


def clients(port):
    kw = dict(
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    names = ("cloudformation", "iam", "dynamodb", "ec2", "autoscaling")
    return {n: boto3.client(n, **kw) for n in names}


def wait(cf, stack):
    deadline = time.time() + 120
    while True:
        s = cf.describe_stacks(StackName=stack)["Stacks"][0]
        if not s["StackStatus"].endswith("_IN_PROGRESS"):
            return s
        if time.time() > deadline:
            sys.exit(f"stack {stack} still {s['StackStatus']} after 120 s")
        time.sleep(0.2)


def paged(client, op, key, **kw):
    out = []
    for page in client.get_paginator(op).paginate(**kw):
        out.extend(page[key])
    return out


def document(doc):
    """A policy document as a dict: moto returns inline role policies made
    by CloudFormation as the text of a Python dict, not JSON."""
    if isinstance(doc, dict):
        return doc
    try:
        return json.loads(doc)
    except ValueError:
        return ast.literal_eval(doc)


def role_view(iam, name):
    role = iam.get_role(RoleName=name)["Role"]
    inline = {
        p: document(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
        for p in paged(iam, "list_role_policies", "PolicyNames", RoleName=name)
    }
    return {
        "id": role["RoleId"],
        "path": role["Path"],
        "tags": {t["Key"]: t["Value"] for t in role.get("Tags", [])},
        "inline": inline,
    }


def made_elsewhere(c, of):
    """The stack's DynamoDB tables, launch templates and autoscaling
    groups, read back through their own APIs."""
    ddb, ec2 = c["dynamodb"], c["ec2"]
    tables = {}
    for name in of("AWS::DynamoDB::Table"):
        t = ddb.describe_table(TableName=name)["Table"]
        t["TimeToLive"] = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        tables[name] = t
    templates = {}
    for lt in of("AWS::EC2::LaunchTemplate"):
        v = ec2.describe_launch_template_versions(LaunchTemplateId=lt)["LaunchTemplateVersions"]
        data = v[-1]["LaunchTemplateData"]
        if "UserData" in data:
            data["UserData"] = base64.b64decode(data["UserData"]).decode()
        templates[lt] = data
    names = of("AWS::AutoScaling::AutoScalingGroup")
    groups = {}
    if names:
        found = c["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=names)
        groups = {g["AutoScalingGroupName"]: g for g in found["AutoScalingGroups"]}
    return {"tables": tables, "launch_templates": templates, "groups": groups}


def create(path, port, stack, params):
    c = clients(port)
    cf, iam = c["cloudformation"], c["iam"]
    cf.create_stack(
        StackName=stack,
        TemplateBody=json.dumps(expand(path)),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    )
    s = wait(cf, stack)
    resources = [
        {
            "logical": r["LogicalResourceId"],
            "type": r["ResourceType"],
            "physical": r.get("PhysicalResourceId", ""),
        }
        for r in paged(cf, "list_stack_resources", "StackResourceSummaries", StackName=stack)
        if r.get("ResourceType")
    ]
    of = lambda ty: [r["physical"] for r in resources if r["type"] == ty]
    roles = {n: role_view(iam, n) for n in of("AWS::IAM::Role")}
    mine = set(of("AWS::IAM::InstanceProfile"))
    profiles = {
        p["InstanceProfileName"]: [r["RoleName"] for r in p["Roles"]]
        for p in paged(iam, "list_instance_profiles", "InstanceProfiles")
        if p["InstanceProfileName"] in mine
    }
    policies, policy_roles = {}, {}
    for arn in of("AWS::IAM::ManagedPolicy"):
        v = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=v)["PolicyVersion"]["Document"]
        policies[arn] = document(doc)
        attached = iam.list_entities_for_policy(PolicyArn=arn, EntityFilter="Role")
        policy_roles[arn] = [r["RoleName"] for r in attached["PolicyRoles"]]
    return {
        **made_elsewhere(c, of),
        "status": s["StackStatus"],
        "reason": s.get("StackStatusReason"),
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])},
        "resources": resources,
        "roles": roles,
        "profiles": profiles,
        "policies": policies,
        "policy_roles": policy_roles,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["expand", "create"])
    ap.add_argument("template")
    ap.add_argument("--port", type=int)
    ap.add_argument("--stack")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--cfn-lint", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.command == "expand":
        json.dump(expand(a.template, a.cfn_lint), sys.stdout)
        return
    if a.port is None or not a.stack:
        sys.exit("create needs --port and --stack")
    params = []
    for p in a.param:
        k, sep, v = p.partition("=")
        if not sep:
            sys.exit(f"--param {p!r}: expected KEY=VALUE")
        params.append((k, v))
    made = create(a.template, a.port, a.stack, params)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(made, f, default=str)
    else:
        json.dump(made, sys.stdout, default=str)


if __name__ == "__main__":
    main()
