// A new sink account for the moved telemetry: hardened like the state account, its containers, and the
// identity's write access.
targetScope = 'resourceGroup'

@description('Name of the new storage account (3-24 lowercase letters and digits).')
param accountName string

@description('Region of the account.')
param location string

@description('Blob containers to create.')
param containers array

@description('Hierarchical namespace (ADLS Gen2).')
param hierarchicalNamespace bool

@description('Principal (object) ID of the function app\'s user-assigned identity.')
param principalId string

@description('Grant the identity Storage Blob Data Contributor here (main.bicep\'s assignRoles).')
param assignRole bool

@description('Tags on the account.')
param tags object

// Storage Blob Data Contributor (docs/deploy.md, role table).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_43:The name is computed in main.bicep ('snkmover' + 13 characters of uniqueString: lowercase letters and digits, 21 long); the check cannot evaluate it.
  //checkov:skip=CKV_AZURE_206:Replication is the owner's choice for their copy of the telemetry; change the SKU to Standard_ZRS/GRS where needed.
  //checkov:skip=CKV_AZURE_59:Flex Consumption without a virtual network writes over public endpoints; every request needs Entra ID (shared keys are off).
  //checkov:skip=CKV_AZURE_35:Same reason as CKV_AZURE_59: a default-deny firewall locks out a function app that is not VNet-integrated.
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    isHnsEnabled: hierarchicalNamespace
    publicNetworkAccess: 'Enabled'
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true, keyType: 'Account' }
        file: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource container 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in containers: {
    parent: blobs
    name: name
    properties: { publicAccess: 'None' }
  }
]

resource writer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignRole) {
  name: guid(account.id, principalId, storageBlobDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
