//! template.yaml's promises that no linter checks: least privilege, one
//! reason for each `Resource: '*'`, every zip function built by
//! cargo-lambda, and a dashboard that shows the metrics the functions emit.

use std::collections::BTreeSet;

use berth_tests::workspace_root;

fn template() -> String {
    std::fs::read_to_string(workspace_root().join("template.yaml")).unwrap()
}

/// Each IAM action of the template, with its line number.
fn actions(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let Some(rest) = trimmed
            .strip_prefix("- ")
            .unwrap_or(trimmed)
            .strip_prefix("Action:")
        else {
            continue;
        };
        let rest = rest.trim();
        if !rest.is_empty() {
            for a in rest.trim_matches(['[', ']']).split(',') {
                out.push((i + 1, a.trim().trim_matches(['\'', '"']).to_owned()));
            }
            continue;
        }
        // A block list below the key.
        for (j, next) in lines.iter().enumerate().skip(i + 1) {
            let trimmed = next.trim_start();
            let deeper = next.len() - trimmed.len() > indent.len();
            match trimmed.strip_prefix("- ") {
                Some(a) if deeper => {
                    out.push((j + 1, a.trim().trim_matches(['\'', '"']).to_owned()))
                }
                _ => break,
            }
        }
    }
    out
}

#[test]
fn no_statement_grants_every_action_and_each_wildcard_resource_says_why() {
    let text = template();
    let actions = actions(&text);
    assert!(
        actions.len() > 20,
        "the template's actions were read: {actions:?}"
    );
    for (line, action) in &actions {
        assert!(
            !action.contains('*') && action.contains(':'),
            "line {line}: `{action}` is not one named action"
        );
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut wildcards = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "Resource: '*'" {
            wildcards += 1;
            let above = lines[i - 1].trim();
            assert!(
                above.starts_with('#') && above.len() > 20,
                "line {}: `Resource: '*'` without its reason on the line above",
                i + 1
            );
        }
    }
    assert!(wildcards >= 1, "the wildcard resources were found");
}

#[test]
fn every_zip_function_is_built_by_cargo_lambda() {
    let text = template();
    let zips = text.matches("Handler: bootstrap").count();
    assert!(zips >= 3, "the driver, ecs-runner and capacity-metric");
    assert_eq!(text.matches("BuildMethod: rust-cargolambda").count(), zips);
    assert_eq!(text.matches("Runtime: provided.al2023").count(), zips);
}

/// The metric names in `text` after `marker` and up to the next quote.
fn names_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_shows_every_metric_the_functions_emit() {
    let text = template();
    let mut shown = names_after(&text, r#"["berth", ""#);
    // And those a SEARCH expression finds by name.
    shown.extend(
        names_after(&text, r#"MetricName=\""#)
            .iter()
            .map(|n| n.trim_end_matches('\\').to_owned()),
    );
    // Published by the capacity metric with PutMetricData.
    let mut emitted = BTreeSet::from([
        berth_capacity_metric::SCHEDULABLE_CONTAINERS.to_owned(),
        berth_capacity_metric::UNPLACEABLE_DEFINITIONS.to_owned(),
        berth_capacity_metric::JOBS_WAITING.to_owned(),
    ]);
    for source in [
        "crates/driver/src/lib.rs",
        "crates/driver/src/launch.rs",
        "crates/ecs-runner/src/events.rs",
        "crates/lambda-task-processor/src/main.rs",
        "crates/capacity-metric/src/scaler.rs",
        "crates/ecs-runner/src/lifecycle.rs",
        "crates/lambda-task-processor/src/runtime.rs",
    ] {
        let code = std::fs::read_to_string(workspace_root().join(source)).unwrap();
        emitted.extend(names_after(&code, r#"count(""#));
        emitted.extend(
            names_after(&code, r#"&[(""#)
                .into_iter()
                // Dimensions, not metrics.
                .filter(|n| n != "Status" && n != "Definition"),
        );
        // The driver's decisions, named in its match.
        for line in code.lines() {
            if let Some((_, name)) = line.split_once("=> \"")
                && let Some(name) = name.split('"').next()
                && name.chars().all(|c| c.is_ascii_alphabetic())
                && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            {
                emitted.insert(name.to_owned());
            }
        }
    }
    assert!(
        emitted.len() >= 10,
        "the emitted metrics were read: {emitted:?}"
    );
    assert_eq!(shown, emitted, "dashboard vs functions");
}

/// The default of template parameter `name`.
fn default_of(text: &str, name: &str) -> String {
    let start = text
        .find(&format!("\n  {name}:\n"))
        .unwrap_or_else(|| panic!("no parameter {name}"));
    text[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim().strip_prefix("Default: "))
        .unwrap_or_else(|| panic!("parameter {name} has no default"))
        .trim_matches('\'')
        .to_owned()
}

/// The value of the first `key:` in the template.
fn value_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key}"))
        .split('#')
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

/// `berth simulate`'s `berth` policy is the template as deployed: the
/// simulator's figures for it are the template's defaults.
#[test]
fn the_simulator_models_the_template_as_deployed() {
    use berth_sim::figures as f;
    let text = template();
    let number = |v: String| v.parse::<f64>().unwrap();
    let defaults = berth_sim::Settings::default();
    assert_eq!(
        number(default_of(&text, "ScaleInAfterSeconds")),
        f64::from(defaults.scale_in_after_s)
    );
    assert_eq!(
        number(default_of(&text, "Headroom")),
        f64::from(defaults.headroom)
    );
    assert_eq!(number(default_of(&text, "ClusterMinSize")), 0.0);
    // Fargate Spot for the jobs that tolerate it, at the list prices.
    assert_eq!(
        default_of(&text, "FargateSpot") == "true",
        defaults.fargate_spot
    );
    assert_eq!(default_of(&text, "Prices"), "");
    assert_eq!(defaults.prices, berth_core::prices::Prices::default());
    assert_eq!(
        number(default_of(&text, "MaxInterruptions")),
        f64::from(berth_core::stop::DEFAULT_MAX_INTERRUPTIONS)
    );
    assert_eq!(
        number(default_of(&text, "ClusterMaxSize")),
        f::CLUSTER_MAX_SIZE.value
    );
    // The types berth's scaler may launch, as the simulator's berth does.
    assert_eq!(default_of(&text, "InstanceTypes"), f::DEFAULT_ALLOWED);
    assert_eq!(default_of(&text, "InstanceVcpus"), f::DEFAULT_ALLOWED_VCPUS);
    assert_eq!(
        default_of(&text, "InstanceMemoryGiB"),
        f::DEFAULT_ALLOWED_MEMORY_GIB
    );
    assert_eq!(
        default_of(&text, "InstanceArchitectures"),
        f::DEFAULT_ALLOWED_ARCHITECTURES
    );
    assert_eq!(
        number(value_of(&text, "MaximumBatchingWindowInSeconds")),
        f::SQS_TO_DRIVER_SECONDS.value
    );
    assert_eq!(
        number(value_of(&text, "MemorySize")) / 1024.0,
        f::FUNCTION_MEMORY_GB.value
    );
    // The driver's trigger, as the rate limits' model runs it.
    assert_eq!(
        number(default_of(&text, "DriverConcurrency")),
        f::DRIVER_CONCURRENCY.value
    );
    assert_eq!(
        number(value_of(&text, "BatchSize")),
        f::DRIVER_BATCH_SIZE.value
    );
    assert_eq!(
        number(value_of(&text, "maxReceiveCount")),
        f::QUEUE_MAX_RECEIVES.value
    );
    assert_eq!(
        text.matches("Type: AWS::CloudWatch::Alarm\n").count() as f64,
        f::BERTH_ALARMS.value,
        "the simulator's idle cost counts the template's alarms"
    );
    assert_eq!(
        text.matches("Type: AWS::CloudWatch::Dashboard\n").count(),
        1,
        "the simulator counts one dashboard"
    );
    assert!(text.contains("Schedule: rate(1 minute)"));
    assert_eq!(f::CAPACITY_METRIC_PERIOD_SECONDS.value, 60.0);
}

#[test]
fn the_driver_knows_the_job_queue_s_last_receive() {
    let text = template();
    let after = |marker: &str| {
        let rest = text
            .split_once(marker)
            .unwrap_or_else(|| panic!("no {marker}"))
            .1;
        rest.split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(
        after("maxReceiveCount:"),
        after(&format!("{}:", berth_aws::settings::MAX_RECEIVES))
    );
}

/// The prefix parameters: each with its condition and its default, which
/// names the environment.
const PREFIXES: [(&str, &str, &str); 4] = [
    (
        "TaskDefinitionPrefix",
        "DefaultTaskDefinitionPrefix",
        "berth-${Environment}_",
    ),
    (
        "TaskRolePrefix",
        "DefaultTaskRolePrefix",
        "berth-${Environment}_task-",
    ),
    (
        "TaskFunctionPrefix",
        "DefaultTaskFunctionPrefix",
        "berth-${Environment}_task-",
    ),
    (
        "JobRolePrefix",
        "DefaultJobRolePrefix",
        "berth-${Environment}_job-",
    ),
];

/// How the template says a prefix: the parameter, or its default.
fn prefix_expression(param: &str, condition: &str, default: &str) -> String {
    format!("!If [{condition}, !Sub '{default}', !Ref {param}]")
}

/// Two stacks in one account never share a default prefix: whoever can
/// write dev's definitions cannot name prod's task definitions, functions
/// or roles.
#[test]
fn each_environment_has_its_own_default_prefixes() {
    let text = template();
    let environment = text
        .split_once("\n  Environment:\n")
        .unwrap()
        .1
        .lines()
        .find_map(|l| l.trim().strip_prefix("AllowedPattern: "))
        .unwrap();
    assert!(!environment.contains('_'), "{environment}");
    for (param, condition, default) in PREFIXES {
        assert_eq!(default_of(&text, param), "", "{param}");
        assert!(
            text.contains(&format!("{condition}: !Equals [!Ref {param}, '']")),
            "{condition}"
        );
        // Every use of the parameter goes through its default.
        let expression = prefix_expression(param, condition, default);
        let through = text.matches(&expression).count();
        assert!(through >= 1, "{param} is not used");
        assert_eq!(
            text.matches(&format!("!Ref {param}")).count(),
            through + 1,
            "{param} used without its default"
        );
        let names = ["dev", "prod", "dev-2"].map(|env| default.replace("${Environment}", env));
        for a in &names {
            for b in &names {
                assert!(a == b || !b.starts_with(a.as_str()), "{a} covers {b}");
            }
        }
    }
    // The functions and the CLI (through the outputs) know them too.
    for (var, (param, condition, default)) in [
        (berth_aws::settings::TASK_DEFINITION_PREFIX, PREFIXES[0]),
        (berth_aws::settings::TASK_FUNCTION_PREFIX, PREFIXES[2]),
        (berth_aws::settings::JOB_ROLE_PREFIX, PREFIXES[3]),
    ] {
        let expression = prefix_expression(param, condition, default);
        assert!(text.contains(&format!("{var}: {expression}")), "{var}");
        assert!(
            text.contains(&format!("  {param}:\n    Description:")),
            "no output {param}"
        );
        assert!(
            berth_aws::stack::STACK_OUTPUTS.contains(&(param, var)),
            "the CLI does not read output {param}"
        );
    }
}

/// Only the task function may assume roles, and only job roles.
#[test]
fn the_task_function_may_assume_only_job_roles() {
    let text = template();
    let lines: Vec<&str> = text.lines().collect();
    let (param, condition, default) = PREFIXES[3];
    let job_roles = format!("- Prefix: {}", prefix_expression(param, condition, default));
    let task_function = (
        text[..text.find("\n  SampleTaskFunction:\n").unwrap()]
            .lines()
            .count(),
        text[..text.find("\n  CapacityMetricFunction:\n").unwrap()]
            .lines()
            .count(),
    );
    let mut granted = 0;
    for (line, action) in actions(&text) {
        if action != "sts:AssumeRole" {
            continue;
        }
        let statement = &lines[line.saturating_sub(4)..(line + 4).min(lines.len())];
        if statement.iter().any(|l| l.contains("Principal:")) {
            continue; // a role's trust policy, not a grant
        }
        granted += 1;
        assert!(
            (task_function.0..task_function.1).contains(&line),
            "line {line}: sts:AssumeRole outside the task function"
        );
        let resource = statement.join("\n");
        assert!(
            resource.contains(":role/${Prefix}*") && resource.contains(&job_roles),
            "line {line}: {resource}"
        );
    }
    assert_eq!(granted, 1);
}

/// Each stack's dashboard is its own: named after the stack, every berth
/// metric on it of the stack's dimension, which every function sets.
#[test]
fn every_dashboard_metric_carries_the_stack() {
    let text = template();
    let metrics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(r#"["berth", ""#))
        .collect();
    assert!(metrics.len() >= 15, "{metrics:?}");
    for m in metrics {
        assert!(m.contains(r#""Stack", "${AWS::StackName}""#), "{m}");
    }
    assert!(text.contains("DashboardName: !Ref AWS::StackName"));
    assert!(text.contains(&format!(
        "{}: !Ref AWS::StackName",
        berth_aws::settings::STACK
    )));
    assert_eq!(berth_aws::metrics::STACK_DIMENSION, "Stack");
}

/// The names of the entries of top-level section `section` (`Parameters`,
/// `Outputs`), each with its lines.
fn entries(text: &str, section: &str) -> Vec<(String, Vec<String>)> {
    let body = text
        .split_once(&format!("\n{section}:\n"))
        .unwrap_or_else(|| panic!("no {section}"))
        .1;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in body.lines() {
        if !line.is_empty() && !line.starts_with(' ') {
            break; // the next section
        }
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
            && !name.starts_with('#')
        {
            out.push((name.to_owned(), Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line.trim().to_owned());
        }
    }
    out
}

/// `sam deploy --guided` and the console explain and group every
/// parameter, and every output says what it is.
#[test]
fn every_parameter_is_explained_and_grouped_and_every_output_explained() {
    let text = template();
    let parameters = entries(&text, "Parameters");
    assert!(parameters.len() >= 20, "{parameters:?}");
    let groups = text
        .split_once("AWS::CloudFormation::Interface:")
        .unwrap()
        .1
        .split_once("\nParameters:")
        .unwrap()
        .0;
    for (name, lines) in &parameters {
        assert!(
            lines.iter().any(|l| l.starts_with("Description:")),
            "parameter {name} has no description"
        );
        let grouped = groups
            .lines()
            .filter(|l| {
                let l = l.trim();
                l == format!("- {name}")
                    || (l.starts_with("Parameters: [")
                        && l.trim_start_matches("Parameters: [")
                            .trim_end_matches(']')
                            .split(", ")
                            .any(|p| p == name))
            })
            .count();
        assert_eq!(grouped, 1, "parameter {name} is in {grouped} groups");
    }
    let outputs = entries(&text, "Outputs");
    assert!(outputs.len() >= 10, "{outputs:?}");
    for (name, lines) in &outputs {
        assert!(
            lines.iter().any(|l| l.starts_with("Description:")),
            "output {name} has no description"
        );
    }
}

/// The network parameters are typed, so that a guided deploy offers the
/// account's VPCs and subnets and CloudFormation refuses ids that do not
/// exist before anything is made.
#[test]
fn network_parameters_are_typed() {
    let text = template();
    let parameters = entries(&text, "Parameters");
    let type_of = |name: &str| {
        parameters
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, lines)| lines.iter().find_map(|l| l.strip_prefix("Type: ")))
            .unwrap_or_else(|| panic!("no parameter {name}"))
            .to_owned()
    };
    assert_eq!(type_of("VpcId"), "AWS::EC2::VPC::Id");
    assert_eq!(type_of("Subnets"), "List<AWS::EC2::Subnet::Id>");
    for (name, lines) in &parameters {
        let ty = lines.iter().find_map(|l| l.strip_prefix("Type: ")).unwrap();
        let network = ["Subnet", "SecurityGroup", "Vpc"]
            .iter()
            .any(|w| name.contains(w));
        assert!(
            !network || ty.contains("AWS::EC2::"),
            "parameter {name} is a plain {ty}"
        );
    }
    // The instances and the awsvpc tasks get the stack's own security
    // groups, in the VPC named (the instances' with or without a public IP:
    // public_ip_reaches_the_functions_and_the_instances_only_when_chosen).
    assert!(text.contains("BERTH_FARGATE_SECURITY_GROUPS: !Ref TaskSecurityGroup"));
    assert_eq!(text.matches("VpcId: !Ref VpcId").count(), 2);
}

/// `make build` (which `make test` runs) builds for the architecture the
/// template deploys by default: `make build && sam deploy` ships binaries
/// that run.
#[test]
fn the_build_and_the_template_agree_on_the_architecture() {
    let makefile = std::fs::read_to_string(workspace_root().join("Makefile")).unwrap();
    let built = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ARCH ?= "))
        .expect("the Makefile's ARCH default")
        .trim();
    assert_eq!(built, default_of(&template(), "Architecture"));
    assert!(
        makefile.contains("--parameter-overrides Architecture=$(ARCH)"),
        "sam build is told the architecture it builds"
    );
    // samconfig.toml does not override it for a build or a deploy.
    let samconfig = std::fs::read_to_string(workspace_root().join("samconfig.toml")).unwrap();
    assert!(!samconfig.contains("Architecture="), "{samconfig}");
}

/// A deployed function uses AWS's own endpoints: the endpoint variables
/// that `sam local invoke --env-vars` may set (it sets only declared ones)
/// are declared empty, left out of the deployed function by
/// `Ref AWS::NoValue`, and nothing else in the template names an endpoint.
#[test]
fn endpoints_are_declared_for_a_local_invoke_and_left_out_when_deployed() {
    let text = template();
    for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"] {
        assert_eq!(value_of(&text, name), "!Ref AWS::NoValue", "{name}");
    }
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("AWS_ENDPOINT_URL"))
        .collect();
    assert_eq!(
        declared,
        [": !Ref AWS::NoValue", "_LAMBDA: !Ref AWS::NoValue"]
    );
    // The instances' user data asks the instance metadata service (on
    // the instance's link-local address) how the instance is bought.
    let imds = "http://169.254.169.254/latest/";
    assert!(text.contains(imds));
    assert!(
        !text.replace(imds, "").contains("http://"),
        "an endpoint in the template"
    );
}

/// The template as CloudFormation receives it from `sam deploy` (SAM's own
/// transform: scripts/sam-transform): each of berth's zip functions has a
/// name of the stack's, and the log group Lambda writes it to
/// (`/aws/lambda/NAME`) is the stack's, kept `LogRetentionDays`, made before
/// the function (it depends on it) so that Lambda never makes it first; its
/// logs are JSON at the Globals' levels; and the endpoint variables are
/// `Ref AWS::NoValue`, which CloudFormation leaves out.
#[test]
fn each_function_logs_to_a_group_of_the_stack_with_retention_once_transformed() {
    let cfn = transformed();
    let resources = cfn["Resources"].as_object().unwrap();
    let mut groups = BTreeSet::new();
    for function in [
        "DriverFunction",
        "EcsRunnerFunction",
        "CapacityMetricFunction",
    ] {
        let props = &resources[function]["Properties"];
        let logging = &props["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{function}");
        assert_eq!(logging["ApplicationLogLevel"], "INFO", "{function}");
        let name = props["FunctionName"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{function} has no name of the stack's"));
        let depends: Vec<&str> = match &resources[function]["DependsOn"] {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|d| d.as_str()).collect(),
            _ => vec![],
        };
        let group = depends
            .iter()
            .copied()
            .find(|d| resources[*d]["Type"] == "AWS::Logs::LogGroup")
            .unwrap_or_else(|| panic!("{function} depends on no log group"));
        let group_props = &resources[group]["Properties"];
        assert_eq!(
            group_props["LogGroupName"]["Fn::Sub"],
            format!("/aws/lambda/{name}"),
            "{group}"
        );
        assert_eq!(
            group_props["RetentionInDays"],
            serde_json::json!({"Ref": "LogRetentionDays"}),
            "{group}"
        );
        assert!(groups.insert(group.to_owned()), "{group} is shared");
        let vars = &props["Environment"]["Variables"];
        // Each setting it declares is one berth reads (`berth-local run
        // --sam-host` gives every one of them a value, empty where unset).
        for name in vars.as_object().unwrap().keys() {
            assert!(
                !name.starts_with("BERTH_") || berth_aws::settings::ALL.contains(&name.as_str()),
                "{function} declares {name}, which berth_aws::settings does not list"
            );
        }
        for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LAMBDA"] {
            assert_eq!(
                vars[name],
                serde_json::json!({"Ref": "AWS::NoValue"}),
                "{function} {name}"
            );
        }
    }
    // The sample task function (a job's; its name under the task function
    // prefix) likewise, when it is deployed.
    let sample = &resources["SampleTaskFunction"];
    assert_eq!(sample["DependsOn"], "SampleTaskLogGroup");
    let group = &resources["SampleTaskLogGroup"];
    assert_eq!(group["Type"], "AWS::Logs::LogGroup");
    assert_eq!(group["Condition"], sample["Condition"]);
    let name = &sample["Properties"]["FunctionName"]["Fn::Sub"];
    let group_name = &group["Properties"]["LogGroupName"]["Fn::Sub"];
    assert_eq!(
        group_name[0].as_str().unwrap(),
        format!("/aws/lambda/{}", name[0].as_str().unwrap())
    );
    assert_eq!(group_name[1], name[1], "the same prefix");
    assert_eq!(
        group["Properties"]["RetentionInDays"],
        serde_json::json!({"Ref": "LogRetentionDays"})
    );
}

/// The template as CloudFormation receives it from `sam deploy`
/// (scripts/sam-transform).
fn transformed() -> serde_json::Value {
    let root = workspace_root();
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg("scripts/sam-transform")
        .current_dir(&root)
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("the SAM CLI in .venv/ (make tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `PublicIp=true` (public subnets, no NAT gateway): every function is told
/// to give Fargate tasks a public IP, and the instances' launch template asks
/// for one on the instance's network interface, which then carries the
/// instances' security group; by default neither asks, and the group is the
/// instance's own.
#[test]
fn public_ip_reaches_the_functions_and_the_instances_only_when_chosen() {
    let cfn = transformed();
    assert_eq!(cfn["Parameters"]["PublicIp"]["Default"], "false");
    assert_eq!(
        cfn["Conditions"]["HasPublicIp"],
        serde_json::json!({"Fn::Equals": [{"Ref": "PublicIp"}, "true"]})
    );
    let resources = cfn["Resources"].as_object().unwrap();
    let mut functions = 0;
    for (name, resource) in resources {
        if resource["Type"] != "AWS::Lambda::Function" {
            continue;
        }
        let vars = &resource["Properties"]["Environment"]["Variables"];
        assert_eq!(
            vars[berth_aws::settings::FARGATE_PUBLIC_IP],
            serde_json::json!({"Ref": "PublicIp"}),
            "{name}"
        );
        functions += 1;
    }
    assert!(functions >= 3, "{functions} functions");
    let data = &resources["InstanceLaunchTemplate"]["Properties"]["LaunchTemplateData"];
    let group = serde_json::json!([{"Ref": "InstanceSecurityGroup"}]);
    let no_value = serde_json::json!({"Ref": "AWS::NoValue"});
    assert_eq!(
        data["SecurityGroupIds"],
        serde_json::json!({"Fn::If": ["HasPublicIp", no_value, group]})
    );
    assert_eq!(
        data["NetworkInterfaces"],
        serde_json::json!({"Fn::If": [
            "HasPublicIp",
            [{"DeviceIndex": 0, "AssociatePublicIpAddress": true, "Groups": group}],
            no_value
        ]})
    );
}

/// One scaler at a time: runs that overlap (a retried run, a schedule
/// delivered twice, the driver's wake-ups) could each count the same room,
/// or one terminate an instance the other just took back. The scaler's
/// concurrency is 1 and nothing retries a run: neither its schedule nor
/// Lambda's asynchronous queue, which drops a wake-up it cannot run within
/// a minute (the next run makes up for it).
#[test]
fn one_scaler_runs_at_a_time_and_no_run_is_retried() {
    let cfn = transformed();
    let resources = cfn["Resources"].as_object().unwrap();
    let props = &resources["CapacityMetricFunction"]["Properties"];
    assert_eq!(props["ReservedConcurrentExecutions"], 1);
    let invoke_config = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::Lambda::EventInvokeConfig"
                && r["Properties"]["FunctionName"]
                    == serde_json::json!({"Ref": "CapacityMetricFunction"})
        })
        .expect("the scaler's asynchronous invoke config");
    assert_eq!(invoke_config["Properties"]["MaximumRetryAttempts"], 0);
    assert_eq!(invoke_config["Properties"]["MaximumEventAgeInSeconds"], 60);
    let schedule = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::Events::Rule"
                && r["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0] == "CapacityMetricFunction"
        })
        .expect("the scaler's schedule");
    assert_eq!(
        schedule["Properties"]["Targets"][0]["RetryPolicy"]["MaximumRetryAttempts"],
        0
    );
}

/// The driver keeps concurrency of its own, and the job queue's event
/// source never runs more of it than that: a driver throttled by other
/// functions would let SQS count receives it never handles, until a job's
/// message went to the dead-letter queue unseen.
#[test]
fn the_driver_has_concurrency_of_its_own_and_the_queue_never_outruns_it() {
    let cfn = transformed();
    let resources = cfn["Resources"].as_object().unwrap();
    let concurrency = serde_json::json!({"Ref": "DriverConcurrency"});
    assert_eq!(
        resources["DriverFunction"]["Properties"]["ReservedConcurrentExecutions"],
        concurrency
    );
    let mapping = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::Lambda::EventSourceMapping"
                && r["Properties"]["FunctionName"] == serde_json::json!({"Ref": "DriverFunction"})
        })
        .expect("the job queue's event source");
    assert_eq!(
        mapping["Properties"]["ScalingConfig"]["MaximumConcurrency"],
        concurrency
    );
    assert!(cfn["Parameters"]["DriverConcurrency"]["MinValue"].as_i64() >= Some(2));
}

/// A task on an instance never reaches the instance role (which may change
/// container instance states, and so undo the scaler's drain) through the
/// instance metadata service: IMDSv2 only, answers one hop at most (a
/// bridge-mode container is a hop further), and the agent blocks awsvpc
/// tasks from it.
#[test]
fn tasks_cannot_reach_the_instance_role_through_instance_metadata() {
    let cfn = transformed();
    let data = &cfn["Resources"]["InstanceLaunchTemplate"]["Properties"]["LaunchTemplateData"];
    assert_eq!(data["MetadataOptions"]["HttpTokens"], "required");
    assert_eq!(data["MetadataOptions"]["HttpPutResponseHopLimit"], 1);
    let user_data = data["UserData"]["Fn::Base64"]["Fn::Sub"]
        .as_str()
        .expect("the instances' user data");
    assert!(
        user_data
            .lines()
            .any(|l| l.trim() == "ECS_AWSVPC_BLOCK_IMDS=true"),
        "{user_data}"
    );
}
