<#
.SYNOPSIS
    Registers the sitewatch exporter to start with Windows: as a Windows service (through NSSM) or as a
    Task Scheduler task. Run it in an elevated PowerShell ("Run as administrator").

.DESCRIPTION
    sitewatch-exporter.exe is a console program, not a Windows service: `sc.exe create` on it alone gives
    "error 1053: the service did not respond in time". Two ways to run it unattended:

    -Mode Service  (default) a real Windows service through NSSM (https://nssm.cc), a small service
                   wrapper. Log files with rotation, restart on failure, stop with Ctrl-C (clean exit).
    -Mode Task     a Task Scheduler task "\sitewatch\sitewatch-exporter": at start-up, as SYSTEM, with
                   highest privileges, "Start in" set to the config folder, no 3-day run limit,
                   restarted every minute if it stops. Nothing else to install. Logs are not kept
                   (the status page at http://127.0.0.1:9815/ shows every check).

    Both run as LocalSystem, which ping checks need: raw ICMP sockets need Administrator rights on Windows.

    Secrets: on Windows write them as enc: values (with "key_file: key" in site.yml) or {file: path};
    {env: NAME} needs NAME set for the service too (nssm set sitewatch-exporter AppEnvironmentExtra NAME=...).
    After editing site.yml, reload without a restart:
        Invoke-RestMethod -Method Post http://127.0.0.1:9815/-/reload

    Layout used (change with the parameters):
        C:\Program Files\sitewatch\venv\       Python virtual environment with sitewatch installed
        C:\ProgramData\sitewatch\site.yml      the config (write it before running this script)
        C:\ProgramData\sitewatch\key           key for enc: values, if any (put "key_file: key" in site.yml)
        C:\ProgramData\sitewatch\logs\         exporter.log (service mode)

    The same by hand, in cmd.exe as Administrator:

      Service (NSSM):
        nssm install sitewatch-exporter "C:\Program Files\sitewatch\venv\Scripts\sitewatch-exporter.exe"
        nssm set sitewatch-exporter AppParameters "--config site.yml --web.listen-address :9815"
        nssm set sitewatch-exporter AppDirectory C:\ProgramData\sitewatch
        nssm set sitewatch-exporter AppStdout C:\ProgramData\sitewatch\logs\exporter.log
        nssm set sitewatch-exporter AppStderr C:\ProgramData\sitewatch\logs\exporter.log
        nssm set sitewatch-exporter AppRotateFiles 1
        nssm set sitewatch-exporter AppRotateOnline 1
        nssm set sitewatch-exporter AppRotateBytes 10485760
        nssm set sitewatch-exporter AppStopMethodConsole 15000
        nssm set sitewatch-exporter AppExit Default Restart
        nssm set sitewatch-exporter AppExit 2 Exit
        nssm set sitewatch-exporter Start SERVICE_AUTO_START
        nssm start sitewatch-exporter

      Task Scheduler:
        schtasks /Create /TN "sitewatch\sitewatch-exporter" /SC ONSTART /RU SYSTEM /RL HIGHEST /F ^
          /TR "\"C:\Program Files\sitewatch\venv\Scripts\sitewatch-exporter.exe\" --config C:\ProgramData\sitewatch\site.yml"
        schtasks /Run /TN "sitewatch\sitewatch-exporter"
      schtasks cannot set "Start in" nor lift the default 3-day limit: in taskschd.msc open the task,
      on Actions > Edit set "Start in (optional)" to C:\ProgramData\sitewatch, and on Settings untick
      "Stop the task if it runs longer than". This script sets both itself.

.EXAMPLE
    # Install Python 3.10+ first (python.org, "for all users"). Then, from a clone of the repository:
    .\examples\windows\install-service.ps1 -Source . -Mode Service -NssmPath C:\Tools\nssm.exe -OpenFirewall

.EXAMPLE
    .\examples\windows\install-service.ps1 -Source . -Mode Task

.EXAMPLE
    .\examples\windows\install-service.ps1 -Mode Task -Uninstall
#>
[CmdletBinding()]
param(
    [ValidateSet('Service', 'Task')]
    [string]$Mode = 'Service',
    # A clone of the sitewatch repository (or a wheel file) to install into the venv; omit to keep what is there.
    [string]$Source,
    # The Python 3.10+ interpreter that makes the venv.
    [string]$Python = 'python',
    [string]$InstallDir = 'C:\Program Files\sitewatch',
    [string]$ConfigDir = 'C:\ProgramData\sitewatch',
    [string]$ListenAddress = ':9815',
    [string]$Name = 'sitewatch-exporter',
    [string]$NssmPath = 'nssm.exe',
    # Allow Prometheus at the office to scrape the exporter's port.
    [switch]$OpenFirewall,
    # Allow inbound ICMP echo replies, for when ping checks time out although ping.exe gets replies.
    [switch]$AllowIcmpReplies,
    [switch]$Uninstall
)

$ErrorActionPreference = 'Stop'
$TaskPath = '\sitewatch\'
$Exe = Join-Path $InstallDir 'venv\Scripts\sitewatch-exporter.exe'
$Config = Join-Path $ConfigDir 'site.yml'
$Port = ($ListenAddress -split ':')[-1]
$FirewallNames = @('sitewatch exporter (TCP)', 'sitewatch ping replies (ICMPv4)')

function Invoke-Native {
    # Runs a program and stops the script when it fails.
    param([string]$FilePath, [string[]]$Arguments)
    & $FilePath @Arguments
    if ($LASTEXITCODE -ne 0) { throw "'$FilePath $($Arguments -join ' ')' failed with exit code $LASTEXITCODE" }
}

$principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script in an elevated PowerShell (Run as administrator).'
}

if ($Uninstall) {
    if ($Mode -eq 'Service') {
        & $NssmPath stop $Name
        Invoke-Native $NssmPath @('remove', $Name, 'confirm')
    } else {
        Stop-ScheduledTask -TaskPath $TaskPath -TaskName $Name -ErrorAction SilentlyContinue
        Unregister-ScheduledTask -TaskPath $TaskPath -TaskName $Name -Confirm:$false
    }
    Get-NetFirewallRule -DisplayName $FirewallNames -ErrorAction SilentlyContinue | Remove-NetFirewallRule
    Write-Host "Removed $Name ($Mode). The venv in $InstallDir and the config in $ConfigDir are left in place."
    return
}

# 1. The program: a venv with sitewatch installed.
if ($Source) {
    Invoke-Native $Python @('-m', 'venv', (Join-Path $InstallDir 'venv'))
    $VenvPython = Join-Path $InstallDir 'venv\Scripts\python.exe'
    Invoke-Native $VenvPython @('-m', 'pip', 'install', '--quiet', '--upgrade', 'pip')
    Invoke-Native $VenvPython @('-m', 'pip', 'install', '--quiet', (Resolve-Path $Source).Path)
}
if (-not (Test-Path $Exe)) { throw "$Exe not found: run the script with -Source <path to a sitewatch clone>." }

# 2. The config: must exist and be valid before anything is registered.
New-Item -ItemType Directory -Force -Path (Join-Path $ConfigDir 'logs') | Out-Null
if (-not (Test-Path $Config)) { throw "Write the config first: $Config (see examples\site.yml)." }
Invoke-Native $Exe @('validate', '--config', $Config)

# Only SYSTEM and Administrators may read the config folder (it may hold secret files and the key).
# Well-known SIDs, so this works on Russian and other localized Windows too.
Invoke-Native icacls.exe @($ConfigDir, '/inheritance:r', '/grant:r',
    '*S-1-5-18:(OI)(CI)F', '*S-1-5-32-544:(OI)(CI)F', '/T', '/Q')

# 3. Registration.
$Arguments = "--config site.yml --web.listen-address $ListenAddress"
if ($Mode -eq 'Service') {
    if (-not (Get-Command $NssmPath -ErrorAction SilentlyContinue)) {
        throw "NSSM not found ($NssmPath): download it from https://nssm.cc and pass -NssmPath C:\path\to\nssm.exe"
    }
    $Log = Join-Path $ConfigDir 'logs\exporter.log'
    if (Get-Service -Name $Name -ErrorAction SilentlyContinue) {
        # Installed before: replace it, so running the script again applies the current settings.
        & $NssmPath stop $Name
        Invoke-Native $NssmPath @('remove', $Name, 'confirm')
    }
    Invoke-Native $NssmPath @('install', $Name, $Exe)
    Invoke-Native $NssmPath @('set', $Name, 'AppParameters', $Arguments)
    Invoke-Native $NssmPath @('set', $Name, 'AppDirectory', $ConfigDir)
    Invoke-Native $NssmPath @('set', $Name, 'DisplayName', 'sitewatch exporter')
    Invoke-Native $NssmPath @('set', $Name, 'Description', 'Runs the site checks and serves them as Prometheus metrics.')
    Invoke-Native $NssmPath @('set', $Name, 'ObjectName', 'LocalSystem')
    Invoke-Native $NssmPath @('set', $Name, 'Start', 'SERVICE_AUTO_START')
    Invoke-Native $NssmPath @('set', $Name, 'AppStdout', $Log)
    Invoke-Native $NssmPath @('set', $Name, 'AppStderr', $Log)
    Invoke-Native $NssmPath @('set', $Name, 'AppRotateFiles', '1')
    Invoke-Native $NssmPath @('set', $Name, 'AppRotateOnline', '1')
    Invoke-Native $NssmPath @('set', $Name, 'AppRotateBytes', '10485760')
    # Ctrl-C first, and time for a clean stop.
    Invoke-Native $NssmPath @('set', $Name, 'AppStopMethodConsole', '15000')
    # Restart after a crash, but not after exit code 2 (a config error: a restart would not fix it).
    Invoke-Native $NssmPath @('set', $Name, 'AppExit', 'Default', 'Restart')
    Invoke-Native $NssmPath @('set', $Name, 'AppExit', '2', 'Exit')
    Invoke-Native $NssmPath @('start', $Name)
    Write-Host "Service $Name started. Log: $Log"
    Write-Host "Stop / start: nssm stop $Name / nssm start $Name   (or services.msc)"
} else {
    $Action = New-ScheduledTaskAction -Execute $Exe -Argument $Arguments -WorkingDirectory $ConfigDir
    $Trigger = New-ScheduledTaskTrigger -AtStartup
    $RunAs = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
    $Settings = New-ScheduledTaskSettingsSet -ExecutionTimeLimit ([TimeSpan]::Zero) `
        -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) -StartWhenAvailable `
        -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -MultipleInstances IgnoreNew
    Register-ScheduledTask -TaskPath $TaskPath -TaskName $Name -Action $Action -Trigger $Trigger `
        -Principal $RunAs -Settings $Settings -Force `
        -Description 'sitewatch exporter: runs the site checks and serves them as Prometheus metrics.' | Out-Null
    Start-ScheduledTask -TaskPath $TaskPath -TaskName $Name
    Write-Host "Task $TaskPath$Name registered and started."
    Write-Host "Stop / start: schtasks /End /TN sitewatch\$Name / schtasks /Run /TN sitewatch\$Name"
}

# 4. Firewall (rules from an earlier run are replaced, not duplicated).
if ($OpenFirewall -or $AllowIcmpReplies) {
    Get-NetFirewallRule -DisplayName $FirewallNames -ErrorAction SilentlyContinue | Remove-NetFirewallRule
}
if ($OpenFirewall) {
    New-NetFirewallRule -DisplayName $FirewallNames[0] -Direction Inbound -Protocol TCP -LocalPort $Port `
        -Action Allow -Profile Any | Out-Null
    Write-Host "Inbound TCP $Port allowed. Limit it to the Prometheus server with: Set-NetFirewallRule -DisplayName '$($FirewallNames[0])' -RemoteAddress <office IP>"
}
if ($AllowIcmpReplies) {
    New-NetFirewallRule -DisplayName $FirewallNames[1] -Direction Inbound -Protocol ICMPv4 -IcmpType 0 `
        -Action Allow -Profile Any | Out-Null
    Write-Host 'Inbound ICMPv4 echo replies allowed.'
}

Write-Host "Metrics: http://127.0.0.1:$Port/metrics   Status page: http://127.0.0.1:$Port/"
Write-Host "Reload the config after editing it: Invoke-RestMethod -Method Post http://127.0.0.1:$Port/-/reload"
