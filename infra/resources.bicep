// Everything insights-mover runs on, inside the resource group main.bicep creates: identity, storage, the
// Flex Consumption app, roles, its own telemetry and alerts. main.bicep passes every parameter through
// (tests/infra checks the two lists agree); see main.bicep for the descriptions users read.
// No storage account key is used anywhere: every connection is identity-based (user-assigned identity).
targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------
param environmentName string
param location string
param pythonVersion string
param maximumInstanceCount int
param zoneRedundant bool
param instanceMemoryMB int
param alwaysReady array
param pipelines object
param schedule string
param existingSinkAccountName string
param existingSinkResourceGroup string
param sinkContainers array
param sinkHierarchicalNamespace bool
param appInsightsResourceIds array
param logAnalyticsWorkspaceIds array
param exportStorageAccountIds array
param lagAlertThresholdSeconds int
param alertEmail string
param appInsightsDisableLocalAuth bool
param assignRoles bool
param extraAppSettings object
param identityName string
param tags object

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------
var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var allTags = union(tags, { 'azd-env-name': environmentName })
var appName = 'func-mover-${token}'
var stateAccountName = 'stmover${take(token, 13)}'
var newSinkAccountName = 'snkmover${take(token, 13)}'
var useExistingSink = !empty(existingSinkAccountName)
var sinkResourceGroup = empty(existingSinkResourceGroup) ? resourceGroup().name : existingSinkResourceGroup
var sinkAccountName = useExistingSink ? existingSinkAccountName : newSinkAccountName
var deploymentContainer = 'app-package'
var ledgerTable = 'moverledger'
var quarantineContainer = 'mover-quarantine'
// The work queue of the fan-out worker (queue trigger on AzureWebJobsStorage).
var workQueue = 'mover-windows'

// Built-in role definition IDs (the table in docs/deploy.md; tests/infra checks both agree).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}
var stateRoles = [
  roles.storageBlobDataOwner
  roles.storageQueueDataContributor
  roles.storageTableDataContributor
]

// ---------------------------------------------------------------------------------------------
// Identity
// ---------------------------------------------------------------------------------------------
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: empty(identityName) ? 'id-mover-${token}' : identityName
  location: location
  tags: allTags
}

// ---------------------------------------------------------------------------------------------
// State account: runtime (AzureWebJobsStorage), deployment package, ledger, quarantine, work queue
// ---------------------------------------------------------------------------------------------
resource state 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43:The name is computed ('stmover' + 13 characters of uniqueString: lowercase letters and digits, 20 long); the check cannot evaluate it.
  //checkov:skip=CKV_AZURE_206:Runtime state only: the moved data lives in the sink, and a lost ledger is rebuilt by replaying windows (their file names are deterministic).
  //checkov:skip=CKV_AZURE_59:Flex Consumption without a virtual network reaches its storage over public endpoints; every request needs Entra ID (shared keys are off).
  //checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: a default-deny firewall locks out a function app that is not VNet-integrated.
  name: stateAccountName
  location: location
  tags: allTags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource stateBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlobs
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

resource quarantine 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: stateBlobs
  name: quarantineContainer
  properties: { publicAccess: 'None' }
}

resource stateTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource ledger 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: stateTables
  name: ledgerTable
}

resource stateQueues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: state
  name: 'default'
}

resource windowsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: stateQueues
  name: workQueue
}

resource stateRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in stateRoles: if (assignRoles) {
    name: guid(state.id, identity.id, role)
    scope: state
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// ---------------------------------------------------------------------------------------------
// Sink account (new here, or an existing one through the module below)
// ---------------------------------------------------------------------------------------------
module newSink 'modules/new-sink.bicep' = if (!useExistingSink) {
  name: 'mover-new-sink'
  params: {
    accountName: newSinkAccountName
    location: location
    containers: sinkContainers
    hierarchicalNamespace: sinkHierarchicalNamespace
    principalId: identity.properties.principalId
    assignRole: assignRoles
    tags: allTags
  }
}

module existingSink 'modules/existing-sink.bicep' = if (useExistingSink) {
  name: 'mover-existing-sink'
  scope: resourceGroup(sinkResourceGroup)
  params: {
    accountName: existingSinkAccountName
    containers: sinkContainers
    principalId: identity.properties.principalId
    assignRole: assignRoles
  }
}

// ---------------------------------------------------------------------------------------------
// Source access (each resource in its own subscription / resource group)
// ---------------------------------------------------------------------------------------------
module appInsightsReader 'modules/source-access.bicep' = [
  for id in appInsightsResourceIds: if (assignRoles) {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'appInsights'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

module workspaceReader 'modules/source-access.bicep' = [
  for id in logAnalyticsWorkspaceIds: if (assignRoles) {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'logAnalytics'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

module exportReader 'modules/source-access.bicep' = [
  for id in exportStorageAccountIds: if (assignRoles) {
    name: 'mover-src-${uniqueString(id)}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      kind: 'exportStorage'
      resourceName: last(split(id, '/'))
      principalId: identity.properties.principalId
    }
  }
]

// ---------------------------------------------------------------------------------------------
// The app's own telemetry: workspace-based Application Insights (OpenTelemetry metrics land in AppMetrics)
// ---------------------------------------------------------------------------------------------
resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-mover-${token}'
  location: location
  tags: allTags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-mover-${token}'
  location: location
  tags: allTags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: appInsightsDisableLocalAuth
  }
}

resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRoles) {
  name: guid(appInsights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Plan and function app
// ---------------------------------------------------------------------------------------------
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-mover-${token}'
  location: location
  tags: allTags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  //checkov:skip=CKV_AZURE_225:Zone redundancy on Flex Consumption is offered in some regions only; turn it on with the zoneRedundant parameter there.
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_78:Flex Consumption has no FTP endpoint and ARM rejects siteConfig.ftpsState for Flex Consumption sites; deployment goes through the blob container only.
  //checkov:skip=CKV_AZURE_67:HTTP version is the platform's on Flex Consumption; none of the Flex Consumption anchor templates sets http20Enabled, so the template leaves it unset.
  //checkov:skip=CKV_AZURE_18:Same reason as CKV_AZURE_67 (the web-app form of the HTTP version check): http20Enabled is left to the platform on Flex Consumption.
  //checkov:skip=CKV_AZURE_17:Client certificates would shut out the callers of /api/replay and /api/status, which authenticate with function keys.
  //checkov:skip=CKV_AZURE_222:/api/replay and /api/status are reached over the internet with a function key; add access restrictions or a VNet where that is not wanted.
  //checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per function; use the alwaysReady parameter for warm instances.
  //checkov:skip=CKV_AZURE_213:No health-check eviction on Flex Consumption: instances are per-execution and scale to zero; the ledger's leases cover a lost instance.
  name: appName
  location: location
  tags: union(allTags, { 'azd-service-name': 'mover' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    // Only properties the anchor templates set (docs/deploy.md, "Verified against"): Flex Consumption rejects
    // FTP, 32-bit, always-on, scale-limit and runtime-version properties (tests/infra/test_flex.py lists them).
    siteConfig: {
      appSettings: concat(appSettings, extraSettings)
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${state.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
  // The host starts with these settings: its identity must already hold its roles.
  dependsOn: [packageContainer, ledger, quarantine, windowsQueue, stateRoleAssignments, newSink, existingSink, telemetryPublisher]
}

// Every setting the engine or the host reads; tests/infra/test_app_settings.py keeps this in step with the code.
var appSettings = [
  // Host storage and the ledger/quarantine account, identity-based (no key).
  { name: 'AzureWebJobsStorage__accountName', value: state.name }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
  // The sink account: the pipelines' sinks name it with "connection_setting": "SinkStorage".
  { name: 'SinkStorage__accountName', value: sinkAccountName }
  { name: 'SinkStorage__clientId', value: identity.properties.clientId }
  // DefaultAzureCredential (query sources with auth kind `entra`) picks the user-assigned identity.
  { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
  { name: 'MOVER_PIPELINES', value: string(pipelines) }
  { name: 'MOVER_SCHEDULE', value: schedule }
  { name: 'MOVER_LEDGER_TABLE', value: ledgerTable }
  { name: 'MOVER_QUARANTINE_CONTAINER', value: quarantineContainer }
  // The timer plans and enqueues; the queue-triggered worker (scaled out per function) moves windows.
  { name: 'MOVER_DISPATCH', value: 'queue' }
  { name: 'MOVER_QUEUE_NAME', value: workQueue }
  // The instance size: the per-process byte budget for rows read ahead is derived from it (1/64).
  { name: 'MOVER_INSTANCE_MEMORY_MB', value: string(instanceMemoryMB) }
]
// Parameter values only (known when the deployment starts), so the loop is allowed.
var extraSettings = [for setting in items(extraAppSettings): { name: setting.key, value: string(setting.value) }]

// ---------------------------------------------------------------------------------------------
// Alerts on the app's own metrics (mover.lag gauge, mover.windows.failed counter; attribute `pipeline`)
// ---------------------------------------------------------------------------------------------
resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-mover-${token}'
  location: 'Global'
  tags: allTags
  properties: {
    groupShortName: 'mover'
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var alertActions = empty(alertEmail) ? {} : { actionGroups: [actionGroup.id] }

resource lagAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-mover-lag-${token}'
  location: location
  tags: allTags
  kind: 'LogAlert'
  properties: {
    displayName: 'insights-mover: pipeline lag'
    description: 'A pipeline is more than ${lagAlertThresholdSeconds} s behind (mover.lag). See /api/status for its failed and missing windows.'
    severity: 2
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: 'AppMetrics | where Name == "mover.lag" | extend pipeline = tostring(Properties["pipeline"]) | extend lag_seconds = todouble(Sum) / iff(ItemCount > 0, todouble(ItemCount), 1.0)'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'lag_seconds'
          dimensions: [{ name: 'pipeline', operator: 'Include', values: ['*'] }]
          operator: 'GreaterThan'
          threshold: lagAlertThresholdSeconds
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    // AppMetrics appears in a new workspace only with the first metric; without this ARM rejects the rule
    // ("Failed to resolve table") on the first deployment.
    skipQueryValidation: true
    actions: alertActions
  }
  dependsOn: [appInsights]
}

resource failedAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-mover-failed-${token}'
  location: location
  tags: allTags
  kind: 'LogAlert'
  properties: {
    displayName: 'insights-mover: failed windows'
    description: 'A window of a pipeline failed (mover.windows.failed). Replay it with POST /api/replay after fixing the cause.'
    severity: 1
    enabled: true
    scopes: [workspace.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: 'AppMetrics | where Name == "mover.windows.failed" | extend pipeline = tostring(Properties["pipeline"]) | extend failed = todouble(Sum)'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failed'
          dimensions: [{ name: 'pipeline', operator: 'Include', values: ['*'] }]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: true
    // AppMetrics appears in a new workspace only with the first metric; without this ARM rejects the rule
    // ("Failed to resolve table") on the first deployment.
    skipQueryValidation: true
    actions: alertActions
  }
  dependsOn: [appInsights]
}

// ---------------------------------------------------------------------------------------------
// Outputs (main.bicep passes them on)
// ---------------------------------------------------------------------------------------------
output AZURE_FUNCTION_NAME string = app.name
output STATUS_URL string = 'https://${app.properties.defaultHostName}/api/status?format=html'
output REPLAY_URL string = 'https://${app.properties.defaultHostName}/api/replay'
output IDENTITY_CLIENT_ID string = identity.properties.clientId
output IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output STATE_ACCOUNT_NAME string = state.name
output SINK_ACCOUNT_NAME string = sinkAccountName
output APPLICATION_INSIGHTS_NAME string = appInsights.name
